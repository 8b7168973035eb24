//! `ndxp-node generate` (hidden): the completions and man pages of the
//! Debian package, from the command line itself (docs/packages.md).

#[test]
fn the_package_gets_completions_and_a_page_per_command() {
    let node = env!("CARGO_BIN_EXE_ndxp-node");
    let run = |args: &[&str]| {
        std::process::Command::new(node)
            .args(args)
            .output()
            .unwrap()
    };
    let zsh = run(&["generate", "completions", "zsh"]);
    let zsh = String::from_utf8(zsh.stdout).unwrap();
    assert!(zsh.starts_with("#compdef ndxp-node"), "{zsh:.100}");
    assert!(
        zsh.contains("--member") && zsh.contains("keys"),
        "{zsh:.100}"
    );

    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["generate", "man", dir.path().to_str().unwrap()])
        .status
        .success());
    let keys_init = std::fs::read_to_string(dir.path().join("ndxp-node-keys-init.1")).unwrap();
    assert!(keys_init.contains("\\-\\-member"), "{keys_init}");
    assert!(dir.path().join("ndxp-node-serve.1").exists());
    // Writing into a file where the directory should be fails cleanly.
    let file = dir.path().join("ndxp-node.1");
    let out = run(&["generate", "man", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ndxp-node.1"));
}
