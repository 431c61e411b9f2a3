//! Makes a directory full or read-only for one command, so a test can show that a write
//! there (a backup, say) fails cleanly.
//!
//! The tests run as root, and root writes through file modes: only a file system that is
//! really full or really mounted read-only makes a write fail. [`run`] mounts one over the
//! directory inside a private mount namespace (`unshare -m --propagation private`), so the
//! mount is gone when the command ends and the machine's mounts are never touched.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// What the directory becomes inside the namespace.
#[derive(Clone, Copy, Debug)]
pub enum Mount {
    /// A 16 KiB tmpfs over it: anything larger than a few small files does not fit
    /// (`No space left on device`).
    Full,
    /// The directory bound onto itself and remounted read-only (`Read-only file system`).
    ReadOnly,
}

impl Mount {
    fn script(self) -> &'static str {
        match self {
            Mount::Full => r#"mount -t tmpfs -o size=16k tmpfs "$1""#,
            Mount::ReadOnly => r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1""#,
        }
    }
}

/// Mounts `mount` over `dir` in a private mount namespace, then runs `script` with `sh -c`
/// there: `$1` is `dir`, `$2`, `$3`, … are `args`. Returns its stdout followed by its
/// stderr; stdout starts with the line `mounted`.
///
/// Panics (the test fails) when `unshare` is missing or the mount cannot be made (no root,
/// no mount namespaces): a test that skipped itself here would prove nothing.
pub fn run<A: AsRef<OsStr>>(mount: Mount, dir: &Path, script: &str, args: &[A]) -> String {
    let script = format!("{} && echo mounted || exit 90\n{script}", mount.script());
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(dir)
        .args(args)
        .output()
        .expect("unshare(1) is needed to make a full or read-only file system as root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.starts_with("mounted\n"),
        "could not set up the mount namespace: {all}"
    );
    all
}
