//! ndxp-node binary.
fn main() {}
