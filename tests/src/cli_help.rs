//! The daemons' command-line convention: every flag and subcommand has help text.

/// Every flag (but `--help`, `--version` and hidden ones) and subcommand of `cmd` without
/// help text, as `path --flag` or `path subcommand`; `path` is the program's name.
pub fn undocumented(cmd: &clap::Command, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    collect(cmd, path, &mut out);
    out
}

fn collect(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id != "help" && id != "version" && arg.get_help().is_none() && !arg.is_hide_set() {
            out.push(format!("{path} --{id}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_about().is_none() {
            out.push(format!("{path} {}", sub.get_name()));
        }
        collect(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// Fails the test when a flag or subcommand of `cmd` has no help text (and runs clap's own
/// consistency checks first).
pub fn assert_every_flag_and_command_has_help_text(cmd: clap::Command) {
    cmd.clone().debug_assert();
    let name = cmd.get_name().to_string();
    let missing = undocumented(&cmd, &name);
    assert!(missing.is_empty(), "no help text: {missing:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_or_subcommand_without_help_is_named() {
        let cmd = clap::Command::new("prog")
            .arg(clap::Arg::new("bare").long("bare"))
            .arg(clap::Arg::new("told").long("told").help("Told."))
            .arg(clap::Arg::new("secret").long("secret").hide(true))
            .subcommand(
                clap::Command::new("run")
                    .about("Runs.")
                    .arg(clap::Arg::new("quiet").long("quiet")),
            )
            .subcommand(clap::Command::new("mute"));
        assert_eq!(
            undocumented(&cmd, "prog"),
            ["prog --bare", "prog run --quiet", "prog mute"]
        );
    }
}
