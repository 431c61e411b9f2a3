#![forbid(unsafe_code)]
//! `airlock-receiver`: see `airlock_receiver::cli`.

fn main() -> std::process::ExitCode {
    airlock_receiver::cli::main()
}
