//! The one report of named checks, each ok or failed with what failed and
//! a hint, that the diagnostic commands (`ndxp-node diagnose`,
//! `ndxp-gateway diagnose`) and the admin APIs print or answer.
//!
//! ```
//! use ndxp_core::check::{Check, CheckReport};
//!
//! let report = CheckReport::new(vec![
//!     Check::ok("global configuration", "version 7, expires in 23 h"),
//!     Check::failed("timestamp round trip", "http://tsa:8190/tsa: HTTP 503")
//!         .with_hint("start the TSA (`ndxp-gateway pki serve`) or check [pki] tsa"),
//! ]);
//! assert!(!report.ok());
//! assert_eq!(report.exit_code(), 1);
//! assert_eq!(report.failed().next().unwrap().name, "timestamp round trip");
//! let text = report.to_text();
//! assert!(text.contains("[FAIL] timestamp round trip: http://tsa:8190/tsa: HTTP 503"));
//! assert!(text.contains("hint: start the TSA"));
//! ```

use serde::{Deserialize, Serialize};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// It passed.
    Ok,
    /// It failed.
    Fail,
}

/// One named check: ok or failed, what was found, and for a failure what to
/// do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Check {
    /// What was checked (`global configuration`, `TLS handshake with
    /// VN/GOV/…/node-h29`).
    pub name: String,
    /// Ok or failed.
    pub status: CheckStatus,
    /// What was found (for a failure, why it failed).
    pub detail: String,
    /// For a failure: what to look at or do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    /// A failed check.
    pub fn failed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
            hint: None,
        }
    }

    /// Adds the hint (printed for failures only).
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether it passed.
    pub fn is_ok(&self) -> bool {
        self.status == CheckStatus::Ok
    }
}

/// The body a `/readyz` answers with `503` when `failed` (the failed
/// readiness checks, not empty) hold: `{"ready": false, "reason": "NAME:
/// DETAIL", "reasons": ["NAME: DETAIL", ...], "checks": [...]}`. `reason`
/// is the first failure, for a load balancer's log; `checks` carry the
/// hints. The node, the central services and the PKI service all answer
/// with it (`docs/monitoring.md`).
///
/// ```
/// use ndxp_core::check::{not_ready_body, Check};
///
/// let body = not_ready_body(&[Check::failed("draining", "the process is stopping")]);
/// assert_eq!(body["ready"], false);
/// assert_eq!(body["reason"], "draining: the process is stopping");
/// assert_eq!(body["checks"][0]["name"], "draining");
/// ```
pub fn not_ready_body(failed: &[Check]) -> serde_json::Value {
    let reasons: Vec<String> = failed
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    serde_json::json!({
        "ready": false,
        "reason": reasons.first().cloned().unwrap_or_default(),
        "reasons": reasons,
        "checks": failed,
    })
}

/// Checks in the order they are shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Whether every check passed.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl CheckReport {
    /// A report of `checks`.
    pub fn new(checks: Vec<Check>) -> Self {
        Self {
            ok: checks.iter().all(Check::is_ok),
            checks,
        }
    }

    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(Check::is_ok)
    }

    /// The failed checks.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.is_ok())
    }

    /// The exit status of a command printing this report: 0 when every
    /// check passed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.ok() {
            0
        } else {
            1
        }
    }

    /// One line per check (`[ok]` or `[FAIL]`, the name, the detail), an
    /// indented `hint:` line under each failure, and a closing summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.is_ok() { "[ok]  " } else { "[FAIL]" };
            out.push_str(&format!("{mark} {}: {}\n", c.name, one_line(&c.detail)));
            if let (false, Some(h)) = (c.is_ok(), &c.hint) {
                out.push_str(&format!("       hint: {}\n", one_line(h)));
            }
        }
        let failed = self.failed().count();
        if failed == 0 {
            out.push_str(&format!("all {} checks passed\n", self.checks.len()));
        } else {
            out.push_str(&format!(
                "{failed} of {} checks failed\n",
                self.checks.len()
            ));
        }
        out
    }
}

/// Control characters (a remote party's text may carry them) become
/// spaces, so that one check stays one line on a terminal.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ok_exits_zero_and_says_so() {
        let r = CheckReport::new(vec![Check::ok("a", "fine"), Check::ok("b", "fine")]);
        assert!(r.ok && r.ok());
        assert_eq!(r.exit_code(), 0);
        assert!(r.to_text().ends_with("all 2 checks passed\n"));
    }

    #[test]
    fn json_names_the_failure_and_its_hint() {
        let r = CheckReport::new(vec![
            Check::ok("a", "fine").with_hint("not shown"),
            Check::failed("b", "broken\nline").with_hint("fix b"),
        ]);
        let v = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(v["ok"], false);
        assert_eq!(v["checks"][1]["status"], "fail");
        assert_eq!(v["checks"][1]["hint"], "fix b");
        let text = r.to_text();
        assert!(text.contains("[FAIL] b: broken line\n"), "{text}");
        assert!(!text.contains("not shown"), "{text}");
        assert!(text.ends_with("1 of 2 checks failed\n"), "{text}");
        let back: CheckReport = serde_json::from_value(v).unwrap_or_default();
        assert_eq!(back, r);
    }
}
