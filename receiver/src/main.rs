#![forbid(unsafe_code)]
//! `airlock-receiver`: see `airlock_receiver::cli`.

/// sled allocates and frees pages on every write; mimalloc does that for about half what
/// glibc's allocator costs (docs/performance.md, receiver ingest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    airlock_receiver::cli::main()
}
