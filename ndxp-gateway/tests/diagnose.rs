//! `ndxp-gateway diagnose` through the binary, and `GET /api/v1/diagnose`
//! of the management API, against the running roles of the gateway
//! harness (registry, PKI with its OCSP responder and TSA, a published
//! service with its backend): everything ok in the working setup; with the
//! TSA or the OCSP responder unreachable, a backend down, the registry
//! database missing or refusing, or the signing certificate about to
//! expire, the failing check names the broken part and gives a hint.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_support::*;
use ndxp_core::check::CheckReport;
use serde_json::{json, Value};

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The OCSP responder the harness's certificates name, and the TSA served
/// beside it.
fn responder_urls(env: &Env) -> (String, String) {
    let pem = std::fs::read(env.dir.path().join("sign.pem")).unwrap();
    let leaf = ndxp_sign::cert::read_pem_chain(&pem).unwrap().remove(0);
    let ocsp = leaf.ocsp_responders().unwrap()[0].to_string();
    let tsa = ocsp.replace("/ocsp", "/tsa");
    (ocsp, tsa)
}

/// What a variant of the harness's configuration changes.
struct Variant<'a> {
    ocsp: &'a str,
    tsa: &'a str,
    /// `[storage] url`; `None` keeps the harness's registry.
    storage: Option<&'a str>,
    /// `[monitoring] cert_warning_days` (the test certificates are valid
    /// for 30 days).
    cert_warning_days: u32,
}

/// Writes `name` in the harness's directory: its configuration with the
/// CA's OCSP responder, a TSA and the variant's changes.
fn write_config(env: &Env, name: &str, v: &Variant) -> PathBuf {
    let tsa_pem = env.pki.tsa_cert().to_pem().unwrap();
    std::fs::write(env.dir.path().join("tsa.pem"), tsa_pem).unwrap();
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let ca = "cert = \"ca.pem\"";
    assert!(text.contains(ca));
    let mut text = text.replacen(
        ca,
        &format!(
            "{ca}\nocsp_urls = [\"{}\"]\n[[globalconf.tsas]]\nname = \"NDXP TSA\"\nurl = \"{}\"\ncert = \"tsa.pem\"\n[monitoring]\ncert_warning_days = {}",
            v.ocsp, v.tsa, v.cert_warning_days
        ),
        1,
    );
    if let Some(url) = v.storage {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let at = lines.iter().position(|l| l == "[storage]").unwrap() + 1;
        assert!(lines[at].starts_with("url = "));
        let mut lines = lines;
        lines[at] = format!("url = \"{url}\"");
        text = lines.join("\n");
    }
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `ndxp-gateway diagnose ARGS --config FILE` off the runtime (the
/// roles it talks to run on it): exit status, stdout, stderr.
async fn run(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"));
    cmd.arg("diagnose")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("NDXP_LOG")
        .env_remove("NDXP_CONFIG");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "diagnose took {:?}: {stdout}{stderr}",
        started.elapsed()
    );
    (out.status.code().unwrap(), stdout, stderr)
}

/// `diagnose --json --timeout-secs 3`: exit status and report.
async fn diagnose(config: &Path) -> (i32, Value) {
    let (code, stdout, stderr) = run(&["--json", "--timeout-secs", "3"], config).await;
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}{stderr}"));
    (code, report)
}

/// The names of the failed checks.
fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn text<'a>(c: &'a Value, field: &str) -> &'a str {
    c[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {c}"))
}

/// The report has exactly the shape of `ndxp_core::check::CheckReport`,
/// which `ndxp-node diagnose --json` prints too.
fn assert_report_shape(report: &Value) {
    let parsed: CheckReport = serde_json::from_value(report.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&parsed).unwrap(), report);
    let mut keys: Vec<_> = report.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["checks", "ok"]);
    assert_eq!(report["ok"], parsed.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_the_broken_part() {
    let env = Env::start().await;
    let offered = env.offered(json!({})).await;
    let (ocsp, tsa) = responder_urls(&env);
    let working = Variant {
        ocsp: &ocsp,
        tsa: &tsa,
        storage: None,
        cert_warning_days: 7,
    };
    let good = write_config(&env, "good.toml", &working);
    let backend_v1 = format!("backend {SERVICE_V1}");
    let tsa_check = "timestamp round trip with NDXP TSA";
    let ocsp_check = format!("OCSP responder {ocsp}");

    // The working setup: every check passes.
    let (code, report) = diagnose(&good).await;
    assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
    assert_report_shape(&report);
    for name in [
        "database",
        "configuration signing key",
        "global configuration",
        &ocsp_check,
        tsa_check,
        &backend_v1,
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{report:#}");
    }
    assert!(text(check(&report, "database"), "detail").contains("(current)"));
    assert!(text(check(&report, tsa_check), "detail").contains("verified timestamp"));
    assert!(text(check(&report, &ocsp_check), "detail").contains("good"));
    assert!(text(check(&report, &backend_v1), "detail").starts_with(&offered.url));
    assert!(
        text(check(&report, "global configuration"), "detail").contains("published"),
        "{report:#}"
    );
    // The text form: one line a check, and the summary.
    let (code, stdout, _) = run(&["--timeout-secs", "3"], &good).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("[ok]   database: "), "{stdout}");
    assert!(stdout.ends_with("checks passed\n"), "{stdout}");

    // The TSA does not answer: that check fails, naming the URL, and only it.
    let dead_tsa = format!("http://127.0.0.1:{}/tsa", closed_port());
    let no_tsa = write_config(
        &env,
        "no-tsa.toml",
        &Variant {
            tsa: &dead_tsa,
            ..working
        },
    );
    let (code, report) = diagnose(&no_tsa).await;
    assert_eq!(
        (code, failed(&report)),
        (1, vec![tsa_check.to_owned()]),
        "{report:#}"
    );
    let c = check(&report, tsa_check);
    assert!(text(c, "detail").starts_with(&dead_tsa), "{c}");
    assert!(text(c, "detail").contains("cannot connect"), "{c}");
    assert!(text(c, "hint").contains("TSA"), "{c}");
    let (code, stdout, _) = run(&[], &no_tsa).await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains(&format!("[FAIL] {tsa_check}: {dead_tsa}")),
        "{stdout}"
    );
    assert!(stdout.contains("hint: "), "{stdout}");

    // The OCSP responder does not answer.
    let dead_ocsp = format!("http://127.0.0.1:{}/ocsp", closed_port());
    let no_ocsp = write_config(
        &env,
        "no-ocsp.toml",
        &Variant {
            ocsp: &dead_ocsp,
            ..working
        },
    );
    let (code, report) = diagnose(&no_ocsp).await;
    let name = format!("OCSP responder {dead_ocsp}");
    assert_eq!(
        (code, failed(&report)),
        (1, vec![name.clone()]),
        "{report:#}"
    );
    assert!(text(check(&report, &name), "hint").contains("responder"));

    // The signing certificate expires within cert_warning_days (30 here).
    let soon = write_config(
        &env,
        "warn.toml",
        &Variant {
            cert_warning_days: 30,
            ..working
        },
    );
    let (code, report) = diagnose(&soon).await;
    assert_eq!(
        (code, failed(&report)),
        (1, vec!["configuration signing key".to_owned()]),
        "{report:#}"
    );
    let c = check(&report, "configuration signing key");
    assert!(text(c, "detail").contains("cert_warning_days = 30"), "{c}");
    assert!(text(c, "hint").contains("renew"), "{c}");

    // A second published service whose backend is down: its check fails,
    // naming the address.
    let down = format!("http://127.0.0.1:{}", closed_port());
    env.offer(&offered.provider, SERVICE_V2, &down, json!({}))
        .await;
    let backend_v2 = format!("backend {SERVICE_V2}");
    let (code, report) = diagnose(&good).await;
    assert_eq!(
        (code, failed(&report)),
        (1, vec![backend_v2.clone()]),
        "{report:#}"
    );
    let c = check(&report, &backend_v2);
    assert!(text(c, "detail").starts_with(&down), "{c}");
    assert!(text(c, "detail").contains("cannot connect"), "{c}");
    assert!(text(c, "hint").contains("backend"), "{c}");

    // The registry database is missing, or its server refuses: the
    // database check fails and what needs it is not checked.
    let missing = format!(
        "sqlite://{}",
        env.dir.path().join("no-such-dir/registry.db").display()
    );
    let refused = format!("postgres://ndxp:secret@127.0.0.1:{}/ndxp", closed_port());
    for (file, url, says) in [
        ("no-db.toml", missing.as_str(), "no database file"),
        ("pg-down.toml", refused.as_str(), "cannot open"),
    ] {
        let config = write_config(
            &env,
            file,
            &Variant {
                storage: Some(url),
                ..working
            },
        );
        let (code, report) = diagnose(&config).await;
        assert_eq!(code, 1, "{report:#}");
        assert_eq!(
            failed(&report),
            ["database", "global configuration", "backend"],
            "{report:#}"
        );
        let c = check(&report, "database");
        assert!(text(c, "detail").contains(says), "{c}");
        assert!(!text(c, "detail").contains("secret"), "{c}");
        assert!(text(c, "hint").contains("[storage] url"), "{c}");
        // What does not need the registry is still checked.
        assert_eq!(check(&report, tsa_check)["status"], "ok", "{report:#}");
    }
    // The registry file was not created by looking for it.
    assert!(!env.dir.path().join("no-such-dir").exists());

    // A configuration that cannot be read is a usage error.
    let (code, _, stderr) = run(&[], &env.dir.path().join("absent.toml")).await;
    assert_eq!(code, 64, "{stderr}");
    let broken = env.dir.path().join("broken.toml");
    std::fs::write(&broken, "instance = \"VN\"\n[globalconf\n").unwrap();
    let (code, _, stderr) = run(&[], &broken).await;
    assert_eq!(code, 64, "{stderr}");
    let (code, _, stderr) = run(&["--timeout", "0"], &good).await;
    assert_eq!(code, 64, "{stderr}");

    // The same report on the management API, for operators only.
    let url = format!("http://{}/api/v1/diagnose", env.mgmt);
    let r = env.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = env
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, body) = env
        .api("GET", "/api/v1/diagnose", &offered.provider, None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "ndxp.access_denied", "{body}");
    let (status, report) = env.op("GET", "/api/v1/diagnose", None).await;
    assert_eq!(status, 200, "{report}");
    assert_report_shape(&report);
    // The server's own configuration: the registry it serves, both
    // services, the one backend down; no TSA or OCSP responder named.
    assert_eq!(check(&report, "database")["status"], "ok", "{report:#}");
    assert_eq!(check(&report, "global configuration")["status"], "ok");
    assert_eq!(check(&report, &backend_v1)["status"], "ok", "{report:#}");
    let c = check(&report, &backend_v2);
    assert_eq!(c["status"], "fail");
    assert!(text(c, "detail").starts_with(&down), "{c}");
    for name in ["timestamp round trip", "OCSP responder"] {
        let c = check(&report, name);
        assert_eq!(c["status"], "ok");
        assert!(
            text(c, "detail").starts_with("skipped: not configured"),
            "{c}"
        );
    }
    assert_eq!(report["ok"], false);

    env.stop().await;
}
