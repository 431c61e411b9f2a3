#![forbid(unsafe_code)]
//! `airlock-receiver`: see `airlock_receiver::cli`.

// The system allocator, not mimalloc: mimalloc cut the CPU per ingested frame by about a
// tenth but held 40 MiB more at start and 75 MiB more under ingest (docs/decisions.md,
// "The receiver uses the system allocator"); an inside host feels memory first.
fn main() -> std::process::ExitCode {
    airlock_receiver::cli::main()
}
