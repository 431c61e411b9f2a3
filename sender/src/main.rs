#![forbid(unsafe_code)]
//! `airlock-sender`: see `airlock_sender::cli`.

fn main() -> std::process::ExitCode {
    airlock_sender::cli::main()
}
