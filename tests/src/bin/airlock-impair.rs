#![forbid(unsafe_code)]
//! Placeholder: the command-line impairment relay lands next.
fn main() {}
