//! The alert rules (`deploy/prometheus`) and the Grafana dashboard
//! (`deploy/grafana/ndxp.json`) use only metrics of the catalogue in
//! `docs/monitoring.md` (which the crates' tests hold to what the binaries
//! expose), and the dashboard is valid JSON whose every panel queries
//! something. promtool checks the rules themselves (`cargo xtask ci`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `ndxp_…` metric name written in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ndxp_") {
        let preceded = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The catalogue: every metric name in the "Metrics" part of
/// `docs/monitoring.md`.
fn catalogue() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(root().join("docs/monitoring.md")).unwrap();
    let start = doc
        .find("\n## Metrics\n")
        .expect("docs/monitoring.md has a \"## Metrics\" section");
    metric_names(&doc[start..])
}

/// The names in `used` that are neither in `known` nor a histogram's
/// series (`_bucket`, `_sum`, `_count`) of a name in `known`.
fn unknown(used: &BTreeSet<String>, known: &BTreeSet<String>) -> Vec<String> {
    used.iter()
        .filter(|n| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            !known.contains(*n) && !known.contains(base)
        })
        .cloned()
        .collect()
}

#[test]
fn the_alert_rules_use_only_catalogued_metrics() {
    let known = catalogue();
    assert!(known.len() > 30, "{known:?}");
    for file in ["ndxp-rules.yml", "ndxp-rules.test.yml"] {
        let text = std::fs::read_to_string(root().join("deploy/prometheus").join(file)).unwrap();
        let used = metric_names(&text);
        assert!(used.len() > 3, "{file}: {used:?}");
        assert_eq!(unknown(&used, &known), Vec::<String>::new(), "{file}");
    }
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_is_json_and_uses_only_catalogued_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana/ndxp.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "ndxp-overview");
    let panels = dashboard["panels"].as_array().unwrap();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let mut e = Vec::new();
        exprs(p, &mut e);
        assert!(!e.is_empty(), "panel {} queries nothing", p["title"]);
    }
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let used: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() > 15, "{used:?}");
    assert_eq!(unknown(&used, &catalogue()), Vec::<String>::new());
}

#[test]
fn names_are_found_whole() {
    let n = metric_names("rate(ndxp_a_total[5m]) / xndxp_b + ndxp_c_bucket{x=\"ndxp_d\"}");
    let want: BTreeSet<String> = ["ndxp_a_total", "ndxp_c_bucket", "ndxp_d"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(n, want);
}
