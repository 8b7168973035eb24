//! ndxp-gateway binary.
fn main() {}
