#!/usr/bin/env python3
"""Writes a section-1 man page for an Airlock binary from its own --help output.

The help text is the one source of truth (every clap flag and command carries a doc
comment), so the page is the binary's --help, and the --help of every subcommand,
set in roff. Usage: manpage.py BINARY NAME VERSION FILES_TEXT > NAME.1
"""
import re
import subprocess
import sys


def run_help(binary, args):
    out = subprocess.run(
        [binary, *args, "--help"], check=True, capture_output=True, text=True
    )
    return out.stdout


def commands(help_text):
    """Subcommand names listed under "Commands:" (clap's layout), without `help`."""
    names = []
    in_commands = False
    for line in help_text.splitlines():
        if line.startswith("Commands:"):
            in_commands = True
            continue
        if in_commands:
            m = re.match(r"^  ([a-z][a-z0-9-]*)\b", line)
            if m:
                if m.group(1) != "help":
                    names.append(m.group(1))
            elif line and not line.startswith(" "):
                break
    return names


def roff_text(text):
    lines = []
    for line in text.rstrip("\n").splitlines():
        line = line.replace("\\", "\\e")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def section(title, text):
    return f'.SS "{title}"\n.nf\n{roff_text(text)}\n.fi\n'


def main():
    binary, name, version, files = sys.argv[1:5]
    top = run_help(binary, [])
    about = top.splitlines()[0].rstrip(".").replace("\\", "\\e") if top else name
    out = [
        f'.TH {name.upper()} 1 "" "{name} {version}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {about}",
        ".SH SYNOPSIS",
        f".B {name}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR",
        ".SH DESCRIPTION",
        ".nf",
        roff_text(top),
        ".fi",
        ".SH COMMANDS",
    ]
    for cmd in commands(top):
        sub = run_help(binary, [cmd])
        out.append(section(f"{name} {cmd}", sub))
        for inner in commands(sub):
            out.append(section(f"{name} {cmd} {inner}", run_help(binary, [cmd, inner])))
    out += [
        ".SH FILES",
        ".nf",
        roff_text(files),
        ".fi",
        ".SH SEE ALSO",
        f"/usr/share/doc/{name}/README.md, /usr/share/doc/{name}/operations.md",
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
