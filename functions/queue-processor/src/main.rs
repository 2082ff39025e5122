//! Wired in the next step.
fn main() {}
