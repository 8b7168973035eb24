//! The flags of every `ndxp-node` command keep the conventions of
//! docs/cli.md (the same rules `ndxp-gateway` is held to), and every
//! command is listed there.
#![allow(clippy::unwrap_used)]

use ndxp_test_support::cli;

#[test]
fn every_flag_keeps_the_conventions_and_every_command_is_documented() {
    let tree = cli::tree(env!("CARGO_BIN_EXE_ndxp-node"));
    let commands = tree.as_array().unwrap();
    for path in [
        &["subsystems", "list"][..],
        &["log", "verify"],
        &["generate", "man"],
    ] {
        assert!(
            commands
                .iter()
                .any(|c| c["path"] == serde_json::json!(path)),
            "{path:?} missing from the tree"
        );
    }
    assert_eq!(cli::violations("ndxp-node", &tree), Vec::<String>::new());
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
    assert_eq!(
        cli::undocumented("ndxp-node", &tree, &doc),
        Vec::<String>::new(),
        "add these commands to docs/cli.md"
    );
}
