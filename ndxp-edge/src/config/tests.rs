#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;
use serde::Deserialize;

use super::env::{parse_name, Overrides};
use super::*;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    name: String,
    db: Db,
    #[serde(default)]
    web: Web,
    #[serde(default)]
    cas: Vec<Ca>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Db {
    url: String,
    #[serde(default)]
    pool: u32,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct Web {
    listen: Option<std::net::SocketAddr>,
    label: String,
    hosts: Vec<String>,
    ratio: f64,
    on: bool,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Ca {
    cert: String,
}

const TEXT: &str = "[db]\nurl = \"sqlite://a.db\"\npool = 2\n";

fn vars(pairs: &[(&str, &str)]) -> Overrides {
    Overrides::from_vars(
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    )
    .unwrap()
}

fn load_with(text: &str, pairs: &[(&str, &str)]) -> Result<Conf, LoadError> {
    load::<Conf>(text, Path::new("/etc/ndxp"), &vars(pairs), &["db.url"]).map(|l| l.value)
}

#[test]
fn the_config_path_comes_from_the_flag_then_the_variable_then_the_default() {
    let d = "/etc/ndxp/node.toml";
    assert_eq!(
        choose_path(Some(Path::new("a.toml")), Some("b.toml".into()), d),
        Path::new("a.toml")
    );
    assert_eq!(
        choose_path(None, Some("b.toml".into()), d),
        Path::new("b.toml")
    );
    assert_eq!(choose_path(None, Some("".into()), d), Path::new(d));
    assert_eq!(choose_path(None, None, d), Path::new(d));
}

#[test]
fn overrides_apply_on_top_of_the_file() {
    let c = load_with(
        TEXT,
        &[
            ("NDXP_DB__POOL", "9"),
            ("NDXP__NAME", "42"),
            ("NDXP_WEB__LISTEN", "127.0.0.1:9000"),
            ("NDXP_WEB__LABEL", "true"),
            ("NDXP_WEB__HOSTS", "a.example, b.example"),
            ("NDXP_WEB__RATIO", "2"),
            ("NDXP_WEB__ON", "true"),
            ("NDXP_CAS__0__CERT", "ca.pem"),
        ],
    )
    .unwrap();
    assert_eq!(c.db.pool, 9);
    assert_eq!(c.name, "42", "a text key takes a number-like value as text");
    assert_eq!(c.web.listen, Some("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(c.web.label, "true");
    assert_eq!(c.web.hosts, ["a.example", "b.example"]);
    assert_eq!(c.web.ratio, 2.0);
    assert!(c.web.on);
    assert_eq!(
        c.cas,
        [Ca {
            cert: "ca.pem".into()
        }]
    );
}

#[test]
fn an_override_of_an_unknown_key_is_named() {
    for (var, key) in [
        ("NDXP_DB__POLL", "db.poll"),
        ("NDXP_DBX__URL", "dbx"),
        ("NDXP__COLOUR", "colour"),
    ] {
        match load_with(TEXT, &[(var, "1")]).unwrap_err() {
            LoadError::Env(e) => {
                assert_eq!(e.var, var);
                assert!(e.reason.contains(key), "{e}");
                assert!(e.reason.contains("unknown field"), "{e}");
            }
            other => panic!("{var}: {other}"),
        }
    }
    match load_with(TEXT, &[("NDXP_DB__POOL", "many")]).unwrap_err() {
        LoadError::Env(e) => assert!(!e.to_string().contains("many"), "{e}"),
        other => panic!("{other}"),
    }
}

#[test]
fn errors_of_the_file_keep_their_line_and_key() {
    let e = load_with("[db]\nurl = \"x\"\npool = \"big\"\n", &[]).unwrap_err();
    match e {
        LoadError::Parse { key, location, .. } => {
            assert_eq!(key.as_deref(), Some("db.pool"));
            assert_eq!(location.map(|l| l.0), Some(3));
        }
        other => panic!("{other}"),
    }
    // With an override the key is still named.
    let e = load_with("[db]\nurl = \"x\"\nbogus = 1\n", &[("NDXP_DB__POOL", "1")]).unwrap_err();
    assert!(e.to_string().contains("db.bogus"), "{e}");
}

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn a_secret_is_read_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "db-url", "postgres://u:s3cret@db/x\n", 0o600);
    let text = "[db]\nurl_file = \"db-url\"\n";
    let l = load::<Conf>(text, dir.path(), &Overrides::none(), &["db.url"]).unwrap();
    assert_eq!(l.value.db.url, "postgres://u:s3cret@db/x");
    assert_eq!(
        l.secret_files,
        [("db.url".to_owned(), dir.path().join("db-url"))]
    );
    // From the environment too.
    let l = load::<Conf>(
        "[db]\n",
        dir.path(),
        &vars(&[("NDXP_DB__URL_FILE", "db-url")]),
        &["db.url"],
    )
    .unwrap();
    assert_eq!(l.value.db.url, "postgres://u:s3cret@db/x");
}

#[test]
fn a_secret_file_others_may_read_or_a_doubled_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    secret_file(dir.path(), "open", "postgres://u:s3cret@db/x", 0o644);
    for text in [
        "[db]\nurl_file = \"open\"\n",
        "[db]\nurl = \"sqlite://x\"\nurl_file = \"open\"\n",
        "[db]\nurl_file = \"missing\"\n",
    ] {
        let e = load::<Conf>(text, dir.path(), &Overrides::none(), &["db.url"]).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, LoadError::Secret { .. }), "{m}");
        assert!(m.starts_with("db.url_file"), "{m}");
        assert!(!m.contains("s3cret"), "{m}");
    }
    // A key not listed as secret has no _file variant.
    let e = load::<Conf>(
        "[db]\nurl = \"x\"\npool_file = \"open\"\n",
        dir.path(),
        &Overrides::none(),
        &["db.url"],
    )
    .unwrap_err();
    assert!(e.to_string().contains("pool_file"), "{e}");
}

#[test]
fn values_are_not_shown_in_type_errors() {
    assert_eq!(
        without_values("invalid type: string \"s3cret\", expected u32"),
        "invalid type: string (value not shown), expected u32"
    );
    assert_eq!(without_values("missing field `url`"), "missing field `url`");
}

fn key_part() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}(_[a-z0-9]{1,4}){0,2}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Whatever the environment holds, reading and applying it never
    // panics: it is applied or refused with a message.
    #[test]
    fn any_environment_is_applied_or_refused(
        names in proptest::collection::vec("NDXP_[A-Za-z0-9_]{0,20}", 0..6),
        values in proptest::collection::vec(".{0,20}", 6),
    ) {
        let vars = names
            .iter()
            .zip(&values)
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        if let Ok(o) = Overrides::from_vars(vars) {
            let _ = load::<Conf>(TEXT, Path::new("/x"), &o, &["db.url"]);
            let _ = load::<toml::Table>("[a]\nb = 1\n[[c]]\nd = \"e\"\n", Path::new("/x"), &o, &[]);
        }
    }

    // A valid name maps to a key path and back.
    #[test]
    fn valid_names_round_trip(parts in proptest::collection::vec(key_part(), 1..4)) {
        let var = format!("NDXP_{}", parts.join("__").to_uppercase());
        let var = if parts.len() == 1 { var.replacen("NDXP_", "NDXP__", 1) } else { var };
        let path = parse_name(&var).unwrap().unwrap();
        prop_assert_eq!(path.to_string(), parts.join("."));
    }

    // Typed values round-trip through the environment.
    #[test]
    fn typed_values_round_trip(
        pool in any::<u32>(),
        label in "[^\u{0}]{0,30}",
        ratio in -1.0e9f64..1.0e9,
        on in any::<bool>(),
        hosts in proptest::collection::vec("[a-z0-9.-]{1,12}", 0..4),
    ) {
        let text = "[db]\nurl = \"sqlite://a.db\"\npool = 2\n[web]\nlabel = \"\"\nratio = 0.5\non = false\nhosts = []\n";
        let pool_s = pool.to_string();
        let ratio_s = ratio.to_string();
        let on_s = on.to_string();
        let hosts_s = hosts.join(",");
        let c = load_with(text, &[
            ("NDXP_DB__POOL", &pool_s),
            ("NDXP_WEB__LABEL", &label),
            ("NDXP_WEB__RATIO", &ratio_s),
            ("NDXP_WEB__ON", &on_s),
            ("NDXP_WEB__HOSTS", &hosts_s),
        ]).unwrap();
        prop_assert_eq!(c.db.pool, pool);
        prop_assert_eq!(c.web.label, label);
        prop_assert_eq!(c.web.ratio, ratio);
        prop_assert_eq!(c.web.on, on);
        prop_assert_eq!(c.web.hosts, hosts);
    }
}
