"""The Debian packages, as a security team installs them.

Builds both .deb files with scripts/package from binaries already built (target/debug by
default, or $AIRLOCK_BIN_DIR), inspects them with dpkg-deb and lintian, installs them into a
throwaway root (`dpkg --root`, maintainer scripts run chrootless with DPKG_ROOT) and checks
the units, the system users made by postinst, owners and modes, that a changed config
survives an upgrade (conffiles), and what purge keeps. The shipped units pass
`systemd-analyze verify` and their `systemd-analyze security --offline=yes` exposure is the
one docs/operations.md states. Needs root (dpkg --root, chown) and dpkg-dev.

Run: python3 -m unittest discover -s packaging/tests -v
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("AIRLOCK_BIN_DIR", REPO / "target" / "debug"))
PACKAGES = {
    "airlock-sender": {"conf": "sender.toml", "extra_dir": "etc/airlock/keys"},
    "airlock-receiver": {"conf": "receiver.toml", "extra_dir": "var/lib/airlock-receiver/trust"},
}


def run(*args, check=True, env=None):
    return subprocess.run(
        [str(a) for a in args], check=check, capture_output=True, text=True, env=env
    )


def build(out, version=None):
    args = [REPO / "scripts" / "package", "--bin-dir", BIN_DIR, "--out", out, "--fast"]
    if version:
        args += ["--version", version]
    lines = run(*args).stdout.split()
    debs = {Path(line).name.split("_")[0]: Path(line) for line in lines if line.endswith(".deb")}
    assert set(debs) == set(PACKAGES), f"scripts/package built {debs}"
    return debs


def fresh_root(parent):
    """An empty system root dpkg can install into: its own dpkg database and user files."""
    root = Path(tempfile.mkdtemp(dir=parent, prefix="root-"))
    (root / "etc").mkdir()
    for sub in ("info", "updates", "triggers"):
        (root / "var/lib/dpkg" / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    (root / "var/lib/dpkg/available").touch()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\n")
    for f in ("shadow", "gshadow"):
        os.chmod(root / "etc" / f, 0o640)
    return root


def dpkg(root, *args):
    return run(
        "dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends",
        f"--log={root}/dpkg.log", *args,
    )


def passwd_entry(root, user):
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields
    return None


def group_id(root, group):
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    return None


def mode_owner(path):
    st = os.lstat(path)
    return (st.st_mode & 0o7777, st.st_uid, st.st_gid)


@unittest.skipUnless(os.geteuid() == 0, "installs into a throwaway root with dpkg --root: needs root")
class Packages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for name in PACKAGES:
            if not (BIN_DIR / name).exists():
                raise FileNotFoundError(
                    f"{BIN_DIR / name} is missing: run `cargo build --workspace --bins` first"
                )
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-packages-"))
        cls.debs = build(cls.tmp / "debs")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_control_fields_conffiles_and_contents(self):
        for name, p in PACKAGES.items():
            deb = self.debs[name]
            info = run("dpkg-deb", "-I", deb).stdout
            self.assertIn(f"Package: {name}\n", info)
            self.assertRegex(info, r"Depends: .*libc6 \(>= [0-9.]+\).*, passwd")
            if name == "airlock-receiver":
                self.assertIn("libssl3", info, "the receiver links OpenSSL (passkeys)")
            for script in ("postinst", "prerm", "postrm", "conffiles", "md5sums"):
                self.assertIn(f" {script} ", info)
            conffiles = run("dpkg-deb", "--ctrl-tarfile", deb).stdout
            self.assertTrue(conffiles)
            listed = run("dpkg-deb", "-f", deb, "Package").stdout.strip()
            self.assertEqual(listed, name)
            ctrl = Path(tempfile.mkdtemp(dir=self.tmp))
            run("dpkg-deb", "-e", deb, ctrl)
            self.assertEqual((ctrl / "conffiles").read_text(), f"/etc/airlock/{p['conf']}\n")

            contents = {}
            for line in run("dpkg-deb", "-c", deb).stdout.splitlines():
                perms, owner, _size, _date, _time, path = line.split(None, 5)
                contents[path.removeprefix(".")] = (perms, owner)
            for path, (perms, owner) in contents.items():
                self.assertEqual(owner, "root/root", f"{path} in {name}")
            expect = {
                f"/usr/bin/{name}": "-rwxr-xr-x",
                f"/lib/systemd/system/{name}.service": "-rw-r--r--",
                f"/etc/airlock/{p['conf']}": "-rw-r-----",
                f"/usr/share/man/man1/{name}.1.gz": "-rw-r--r--",
                f"/usr/share/doc/{name}/copyright": "-rw-r--r--",
                f"/usr/share/doc/{name}/README.md": "-rw-r--r--",
                f"/usr/share/doc/{name}/examples/airlock-alerts.yml": "-rw-r--r--",
                f"/usr/share/doc/{name}/examples/airlock-dashboard.json": "-rw-r--r--",
            }
            for path, perms in expect.items():
                self.assertIn(path, contents, f"{name} lacks {path}")
                self.assertEqual(contents[path][0], perms, path)
            # The data directory belongs to the service user: postinst makes it, not the archive.
            self.assertNotIn(f"/var/lib/{name}/", contents)

    def test_man_page_is_the_help_of_every_command(self):
        for name in PACKAGES:
            root = Path(tempfile.mkdtemp(dir=self.tmp))
            run("dpkg-deb", "-x", self.debs[name], root)
            page = root / f"usr/share/man/man1/{name}.1.gz"
            warnings = run("man", "--warnings", "-l", page, env={**os.environ, "MANWIDTH": "80"})
            self.assertEqual(warnings.stderr, "", f"{name}.1 has roff warnings")
            text = warnings.stdout
            self.assertIn("run", text)
            self.assertIn("--config", text)
            if name == "airlock-receiver":
                self.assertIn("airlock-receiver audit verify", text)

    def test_lintian_is_clean(self):
        if shutil.which("lintian") is None:
            self.skipTest("lintian is not installed (scripts/install-test-deps installs it)")
        out = run("lintian", "--tag-display-limit", "0", *self.debs.values(), check=False)
        tags = [l for l in out.stdout.splitlines() if re.match(r"^[EWX]: ", l)]
        self.assertEqual(tags, [], out.stdout)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_install_into_a_throwaway_root(self):
        root = fresh_root(self.tmp)
        dpkg(root, "-i", *self.debs.values())
        uids = set()
        for name, p in PACKAGES.items():
            entry = passwd_entry(root, name)
            self.assertIsNotNone(entry, f"postinst did not add the user {name}")
            _, _, uid, gid, _, home, shell = entry
            uid, gid = int(uid), int(gid)
            self.assertLess(uid, 1000, "a system user")
            self.assertEqual(group_id(root, name), gid, "a group of its own")
            self.assertEqual(shell, "/usr/sbin/nologin")
            self.assertEqual(home, f"/var/lib/{name}")
            uids.add(uid)
            self.assertEqual(mode_owner(root / f"var/lib/{name}"), (0o750, uid, gid))
            self.assertEqual(mode_owner(root / p["extra_dir"]), (0o700, uid, gid))
            self.assertEqual(mode_owner(root / "etc/airlock" / p["conf"]), (0o640, 0, gid))
            self.assertEqual(mode_owner(root / f"lib/systemd/system/{name}.service"), (0o644, 0, 0))
            self.assertEqual(mode_owner(root / f"usr/bin/{name}"), (0o755, 0, 0))
            version = run(root / f"usr/bin/{name}", "--version").stdout
            self.assertTrue(version.startswith(name), version)
        self.assertEqual(len(uids), 2, "one user per daemon")
        # The shipped receiver example passes the receiver's own check.
        check = run(root / "usr/bin/airlock-receiver", "check-config", "--config",
                    root / "etc/airlock/receiver.toml")
        self.assertIn("ok", check.stdout)

        # An operator edits the config; the upgrade (a new version) keeps the edit, puts the
        # group and mode back, and does not add the user twice.
        conf = root / "etc/airlock/receiver.toml"
        conf.write_text(conf.read_text().replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:9999"'))
        os.chmod(conf, 0o600)
        passwd_before = (root / "etc/passwd").read_text()
        newer = build(self.tmp / "debs-newer", version="0.1.0+upgrade1")
        dpkg(root, "--force-confold", "-i", *newer.values())
        self.assertIn('listen = "127.0.0.1:9999"', conf.read_text(), "the upgrade overwrote the config")
        self.assertEqual(mode_owner(conf)[0], 0o640)
        self.assertEqual((root / "etc/passwd").read_text(), passwd_before)
        status = run("dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                     "${Package} ${Version}\n").stdout
        self.assertIn("airlock-receiver 0.1.0+upgrade1", status)

        # Purge removes the config but keeps the data directory and the user (the frame log
        # and the seq state outlive the package).
        (root / "var/lib/airlock-receiver/marker").write_text("frame log")
        dpkg(root, "--purge", "airlock-receiver")
        self.assertFalse(conf.exists(), "purge keeps the conffile")
        self.assertFalse((root / "usr/bin/airlock-receiver").exists())
        self.assertTrue((root / "var/lib/airlock-receiver/marker").exists())
        self.assertIsNotNone(passwd_entry(root, "airlock-receiver"))

    def test_units_verify_and_their_exposure_is_the_documented_one(self):
        root = fresh_root(self.tmp)
        dpkg(root, "-i", *self.debs.values())
        # systemd-analyze --root resolves the unit's dependencies (sysinit.target, ...) and
        # ExecStart inside the root: give it the host's systemd units beside ours.
        units = root / "lib/systemd/system"
        for unit in Path("/lib/systemd/system").iterdir():
            target = units / unit.name
            if not target.exists() and unit.is_file():
                shutil.copy2(unit, target)
        docs = (REPO / "docs/operations.md").read_text()
        for name in PACKAGES:
            unit = f"/lib/systemd/system/{name}.service"
            verify = run("systemd-analyze", "verify", "--man=no", f"--root={root}", unit, check=False)
            self.assertEqual((verify.returncode, verify.stderr, verify.stdout), (0, "", ""),
                             f"systemd-analyze verify {name}.service")
            sec = run("systemd-analyze", "security", "--offline=yes", f"--root={root}", unit).stdout
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", sec)
            self.assertIsNotNone(m, sec)
            score = float(m.group(1))
            self.assertLessEqual(score, 2.0, f"{name}.service exposure {score}:\n{sec}")
            doc = re.search(rf"`{name}\.service`[^|\n]*\|\s*([0-9.]+)", docs)
            self.assertIsNotNone(doc, f"docs/operations.md does not state the exposure of {name}.service")
            self.assertEqual(float(doc.group(1)), score,
                             f"docs/operations.md states {doc.group(1)} for {name}.service, systemd-analyze says {score}")

    def test_sender_unit_allows_sched_setaffinity_and_nothing_else_of_resources(self):
        unit = (REPO / "packaging/airlock-sender.service").read_text()
        filters = re.findall(r"^SystemCallFilter=(.*)$", unit, re.M)
        self.assertEqual(filters, ["@system-service", "~@privileged @resources", "sched_setaffinity"])
        self.assertIn("SystemCallErrorNumber=EPERM", unit)
        receiver = (REPO / "packaging/airlock-receiver.service").read_text()
        self.assertNotIn("sched_setaffinity", receiver)


if __name__ == "__main__":
    unittest.main()
