//! The hidden `generate` command the Debian packages are built with
//! (docs/packages.md): completions and man pages from the command line
//! itself, so they list every command and option a user can type.

use std::process::Command;

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .args(args)
        .output()
        .expect("running ndxp-gateway")
}

#[test]
fn completions_and_man_pages_cover_the_commands_and_the_command_stays_out_of_help() {
    for (shell, registers) in [
        ("bash", "complete -F _ndxp__gateway"),
        ("zsh", "#compdef ndxp-gateway"),
        ("fish", "complete -c ndxp-gateway"),
    ] {
        let out = gateway(&["generate", "completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(registers), "{shell}: {script:.200}");
        for word in ["pki", "serve", "config", "ocsp-url"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let out = gateway(&["generate", "man", man.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(man.join("ndxp-gateway-pki-serve.1")).unwrap();
    assert!(page.contains(".TH ndxp-gateway-pki-serve 1"), "{page:.300}");
    assert!(page.contains("\\-\\-listen"), "{page}");
    assert!(man.join("ndxp-gateway.1").exists());
    assert!(!man.join("ndxp-gateway-generate.1").exists());

    let help = gateway(&["--help"]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("generate"));
    // A shell it does not know is a usage error, not a panic.
    let out = gateway(&["generate", "completions", "nosh"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}
