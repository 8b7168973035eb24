//! Records the compiler's version for `ndxp_build_info` (`NDXP_RUSTC`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-env-changed=NDXP_COMMIT");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = Command::new(rustc).arg("--version").output() {
        if out.status.success() {
            let v = String::from_utf8_lossy(&out.stdout);
            // "rustc 1.83.0 (90b35a623 2024-11-26)" -> "1.83.0"
            if let Some(version) = v.split_whitespace().nth(1) {
                println!("cargo:rustc-env=NDXP_RUSTC={version}");
            }
        }
    }
}
