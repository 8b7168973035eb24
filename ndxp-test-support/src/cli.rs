//! The command-line conventions of `docs/cli.md`, checked on the command
//! tree a binary prints with its hidden `generate tree` command. Both
//! binaries are checked against the same rules and the same table of
//! concepts, so a concept is spelled the same in both.
//!
//! ```
//! use ndxp_test_support::cli::violations;
//!
//! let tree = serde_json::json!([{
//!     "path": ["members", "list"], "hidden": false, "group": false,
//!     "args": [{"id": "config_file", "long": "config-file", "short": null,
//!               "aliases": [], "value_name": "FILE", "takes_value": true,
//!               "global": false, "hidden": false}]
//! }]);
//! let found = violations("ndxp-gateway", &tree);
//! assert!(found.iter().any(|v| v.contains("--config-file") && v.contains("--config")));
//! assert!(found.iter().any(|v| v.contains("--json")));
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

/// Spellings that name a concept the binaries already spell otherwise:
/// (the wrong spelling, the convention's).
pub const WRONG_SPELLINGS: &[(&str, &str)] = &[
    ("config-file", "config"),
    ("conf-file", "config"),
    ("cfg", "config"),
    ("configuration", "config"),
    ("as-json", "json"),
    ("output-json", "json"),
    ("json-output", "json"),
    ("output", "out"),
    ("output-file", "out"),
    ("out-file", "out"),
    ("out-dir", "out"),
    ("output-dir", "out"),
    ("directory", "dir"),
    ("pki-dir", "dir"),
    ("addr", "listen"),
    ("address", "listen"),
    ("bind", "listen"),
    ("listen-addr", "listen"),
    ("listen-address", "listen"),
    ("admin-addr", "admin-listen"),
    ("admin-address", "admin-listen"),
    ("member-id", "member"),
    ("subsystem-id", "subsystem"),
    ("service-id", "service"),
    ("node-name", "node"),
    ("pass-file", "passphrase-file"),
    ("passphrase-path", "passphrase-file"),
    ("password-file", "passphrase-file"),
    ("key-algorithm", "key-alg"),
    ("algorithm", "key-alg"),
    ("fingerprint", "sha256"),
    ("sha-256", "sha256"),
    ("certificate", "cert"),
    ("timeout", "timeout-secs"),
    ("wait", "wait-secs"),
    ("log-format", "log-json"),
];

/// Duration flags name their unit: `-secs` or `-ms` (or are counted in
/// the unit they are named after, like `--days`). These suffixes spell a
/// unit another way.
const WRONG_UNIT_SUFFIXES: &[&str] = &[
    "-seconds", "-second", "-sec", "-s", "-millis", "-msecs", "-msec", "-minutes", "-mins",
];

/// The only short flags, each standing for one long flag (`-h` and `-V`
/// are clap's own and never appear in the tree).
pub const SHORT_FLAGS: &[(char, &str)] = &[('o', "out"), ('f', "file")];

/// Value names a visible positional argument may have: a file or a
/// directory a verb reads or writes, or a shell for `generate`. Anything
/// else (an identifier) is a named flag.
const POSITIONAL_VALUES: &[&str] = &["FILE", "DIR", "SHELL"];

/// Last words of the commands that print a listing or a report: each has
/// `--json`.
pub const JSON_COMMANDS: &[&str] = &["list", "status", "check", "diagnose", "diff", "reconcile"];

/// Runs `binary generate tree` and returns the parsed tree.
///
/// # Panics
/// When the binary cannot be run, fails, or prints something else than
/// JSON (a test wants to stop there).
pub fn tree(binary: &str) -> Value {
    let out = std::process::Command::new(binary)
        .args(["generate", "tree"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    assert!(
        out.status.success(),
        "{binary} generate tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{binary} generate tree printed no JSON: {e}"))
}

fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn words(cmd: &Value) -> Vec<String> {
    cmd["path"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every break of the conventions in `tree` (from [`tree`]) of `binary`,
/// one sentence each naming the command and the flag; empty when it
/// keeps them all.
pub fn violations(binary: &str, tree: &Value) -> Vec<String> {
    let mut found = Vec::new();
    // long flag -> (takes a value, first command it was seen in)
    let mut takes: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for cmd in tree.as_array().map(Vec::as_slice).unwrap_or_default() {
        let path = words(cmd);
        let name = format!("{binary} {}", path.join(" "));
        let name = name.trim_end();
        let hidden_cmd = cmd["hidden"].as_bool().unwrap_or(false);
        let args = cmd["args"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for word in &path {
            if !is_kebab(word) {
                found.push(format!(
                    "{name}: the command word {word:?} is not lowercase kebab-case"
                ));
            }
        }
        for arg in args {
            let hidden = arg["hidden"].as_bool().unwrap_or(false);
            let takes_value = arg["takes_value"].as_bool().unwrap_or(false);
            let value_name = arg["value_name"].as_str().unwrap_or_default();
            let short = arg["short"].as_str().and_then(|s| s.chars().next());
            let Some(long) = arg["long"].as_str() else {
                if !hidden && !POSITIONAL_VALUES.contains(&value_name) {
                    found.push(format!(
                        "{name}: the positional argument {value_name} names something that is not a file or directory; make it a flag"
                    ));
                }
                continue;
            };
            let aliases: Vec<&str> = arg["aliases"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for spelling in std::iter::once(long).chain(aliases.iter().copied()) {
                if !is_kebab(spelling) {
                    found.push(format!(
                        "{name}: --{spelling} is not lowercase kebab-case (a-z, 0-9 and '-')"
                    ));
                }
            }
            if let Some((_, right)) = WRONG_SPELLINGS.iter().find(|(w, _)| *w == long) {
                found.push(format!(
                    "{name}: --{long} is spelled --{right} everywhere else (keep --{long} as a hidden alias)"
                ));
            }
            if let Some(suffix) = WRONG_UNIT_SUFFIXES.iter().find(|s| long.ends_with(*s)) {
                found.push(format!(
                    "{name}: --{long} names its unit as {suffix}; durations end in -secs or -ms"
                ));
            }
            match short {
                Some(c) => match SHORT_FLAGS.iter().find(|(s, _)| *s == c) {
                    Some((_, l)) if *l == long => {}
                    Some((_, l)) => {
                        found.push(format!("{name}: -{c} stands for --{l}, not --{long}"))
                    }
                    None => found.push(format!(
                        "{name}: -{c} is not one of the short flags of docs/cli.md"
                    )),
                },
                None => {
                    if let Some((c, _)) = SHORT_FLAGS.iter().find(|(_, l)| *l == long) {
                        found.push(format!("{name}: --{long} has no -{c}"));
                    }
                }
            }
            if long == "config" && value_name != "FILE" {
                found.push(format!("{name}: --config takes a FILE"));
            }
            if long == "json" && takes_value {
                found.push(format!("{name}: --json is a switch, it takes no value"));
            }
            match takes.get(long) {
                Some((t, first)) if *t != takes_value => found.push(format!(
                    "{name}: --{long} {} a value here but not in {first}",
                    if takes_value {
                        "takes"
                    } else {
                        "does not take"
                    }
                )),
                Some(_) => {}
                None => {
                    takes.insert(long.to_string(), (takes_value, name.to_string()));
                }
            }
        }
        let is_group = cmd["group"].as_bool().unwrap_or(false);
        let last = path.last().map(String::as_str).unwrap_or_default();
        if !is_group && !hidden_cmd && JSON_COMMANDS.contains(&last) {
            let has_json = args.iter().any(|a| a["long"].as_str() == Some("json"));
            if !has_json {
                found.push(format!("{name}: a listing or report without --json"));
            }
        }
    }
    found
}

/// The visible commands of `tree` (that run, not groups) that `doc` (the
/// text of `docs/cli.md`) does not name as `` `binary words` ``.
pub fn undocumented(binary: &str, tree: &Value, doc: &str) -> Vec<String> {
    tree.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|c| {
            !c["hidden"].as_bool().unwrap_or(false) && !c["group"].as_bool().unwrap_or(false)
        })
        .map(|c| format!("{binary} {}", words(c).join(" ")))
        .filter(|full| !doc.contains(&format!("`{full}`")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arg(long: Option<&str>, short: Option<&str>, value: Option<&str>) -> Value {
        json!({"id": "x", "long": long, "short": short, "aliases": [],
               "value_name": value, "takes_value": value.is_some(),
               "global": false, "hidden": false})
    }

    fn one(path: &[&str], args: Vec<Value>) -> Value {
        json!([{"path": path, "hidden": false, "group": false, "args": args}])
    }

    #[test]
    fn a_tree_that_keeps_the_conventions_passes() {
        let t = one(
            &["members", "list"],
            vec![
                arg(Some("config"), None, Some("FILE")),
                arg(Some("json"), None, None),
                arg(Some("out"), Some("o"), Some("FILE")),
                arg(Some("timeout-secs"), None, Some("SECS")),
                arg(None, None, Some("FILE")),
            ],
        );
        assert_eq!(violations("b", &t), Vec::<String>::new());
    }

    #[test]
    fn each_broken_rule_is_named() {
        for (a, says) in [
            (arg(Some("log_json"), None, None), "kebab-case"),
            (arg(Some("Config"), None, Some("FILE")), "kebab-case"),
            (arg(Some("config-file"), None, Some("FILE")), "--config"),
            (arg(Some("timeout"), None, Some("SECS")), "--timeout-secs"),
            (
                arg(Some("wait-seconds"), None, Some("SECS")),
                "-secs or -ms",
            ),
            (arg(Some("out"), None, Some("FILE")), "has no -o"),
            (
                arg(Some("output"), Some("o"), Some("FILE")),
                "-o stands for --out",
            ),
            (arg(Some("verbose"), Some("v"), None), "-v is not one"),
            (arg(Some("config"), None, Some("PATH")), "takes a FILE"),
            (arg(Some("json"), None, Some("BOOL")), "switch"),
            (arg(None, None, Some("ID")), "positional"),
        ] {
            let t = one(&["members", "show"], vec![a]);
            let found = violations("b", &t);
            assert!(
                found.iter().any(|v| v.contains(says)),
                "{says:?} not in {found:?}"
            );
        }
        let mut old = arg(Some("timeout-secs"), None, Some("SECS"));
        old["aliases"] = json!(["Timeout_Secs"]);
        assert_eq!(violations("b", &one(&["x"], vec![old])).len(), 1);
        // A hidden old alias with a retired spelling is fine.
        let mut kept = arg(Some("timeout-secs"), None, Some("SECS"));
        kept["aliases"] = json!(["timeout"]);
        assert!(violations("b", &one(&["x"], vec![kept])).is_empty());
    }

    #[test]
    fn a_listing_without_json_and_a_flag_with_two_meanings_are_found() {
        let t = one(
            &["nodes", "list"],
            vec![arg(Some("config"), None, Some("FILE"))],
        );
        assert!(violations("b", &t)[0].contains("without --json"));
        let t = json!([
            {"path": ["a"], "hidden": false, "group": false,
             "args": [arg(Some("member"), None, Some("MEMBER"))]},
            {"path": ["b"], "hidden": false, "group": false,
             "args": [arg(Some("member"), None, None)]},
        ]);
        let found = violations("b", &t);
        assert!(
            found[0].contains("does not take a value here but not in b a"),
            "{found:?}"
        );
    }

    #[test]
    fn commands_missing_from_the_doc_are_listed() {
        let t = json!([
            {"path": [], "hidden": false, "group": true, "args": []},
            {"path": ["keys", "init"], "hidden": false, "group": false, "args": []},
            {"path": ["backup"], "hidden": false, "group": false, "args": []},
            {"path": ["generate", "tree"], "hidden": true, "group": false, "args": []},
        ]);
        assert_eq!(
            undocumented("ndxp-node", &t, "`ndxp-node keys init` makes keys"),
            vec!["ndxp-node backup".to_string()]
        );
    }
}
