//! `cargo xtask` as a new user meets it: help on every command, exit 2 on a
//! wrong command or option, and a demo that refuses to start on a port that
//! is taken instead of talking to another demo's services.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("running xtask")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_is_printed_for_every_command_and_exits_0() {
    for (args, expect) in [
        (&["help"][..], &["ci", "bench", "demo"][..]),
        (&["--help"], &["ci", "bench", "demo"]),
        (&["-h"], &["ci", "bench", "demo"]),
        (
            &["help", "demo"],
            &["--port-base", "--release", "--once", "--dir"],
        ),
        (
            &["demo", "--help"],
            &["--port-base", "--release", "--once", "--dir"],
        ),
        (&["demo", "-h"], &["--port-base", "--release"]),
        (&["ci", "--help"], &["clippy"]),
        (&["bench", "--help"], &["NAME", "reconcile", "gateway"]),
        (
            &["package", "--help"],
            &["--install-tools", "target/debian"],
        ),
        (&["help", "package"], &["cargo-deb", "--install-tools"]),
    ] {
        let out = xtask(args);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("Usage: cargo xtask"), "{args:?}: {stdout}");
        for word in expect {
            assert!(stdout.contains(word), "{args:?} mentions {word}: {stdout}");
        }
    }
}

#[test]
fn a_wrong_command_or_option_prints_the_usage_to_stderr_and_exits_2() {
    for args in [
        &["nosuch"][..],
        &["demo", "--nosuch"],
        &["ci", "extra"],
        &[],
    ] {
        let out = xtask(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage:"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
    // A bad value names the option it was given to.
    let out = xtask(&["demo", "--port-base", "many"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'many' for '--port-base"),
        "{stderr}"
    );
}

#[test]
fn the_demo_refuses_a_taken_port_before_it_creates_anything() {
    // Any free port P; the demo with --port-base P-90 puts its PKI service
    // (the first port it checks) on P.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("xtask-port-check-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    let base = (port - 90).to_string();
    let out = xtask(&[
        "demo",
        "--once",
        "--dir",
        dir.to_str().unwrap(),
        "--port-base",
        &base,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} ")),
        "names the port: {stderr}"
    );
    assert!(stderr.contains("--port-base"), "says what to do: {stderr}");
    assert!(!dir.exists(), "nothing was created in {}", dir.display());
    assert!(
        !text(&out.stdout).contains("building"),
        "nothing was built: {}",
        text(&out.stdout)
    );
    drop(taken);
}

#[test]
fn a_port_base_that_leaves_no_room_is_refused() {
    let out = xtask(&["demo", "--once", "--port-base", "65400"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--port-base must be between 1024 and 65235"),
        "{stderr}"
    );
}
