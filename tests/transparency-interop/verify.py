#!/usr/bin/env python3
"""Checks the receiver's transparency-log output with a third-party library (aics-tlog):

    verify.py CHECKPOINT KEYFILE [--consistency JSON OLD_CHECKPOINT] [--inclusion JSON]
              [--must-fail FILE]...

CHECKPOINT is a checkpoint the receiver signed (`airlock-receiver checkpoint export`),
KEYFILE its verifier key (`checkpoint.pub`, or the `.pub` file written by the export).
--consistency checks the proof printed by `audit consistency OLD NEW --json` against the
two checkpoints' roots; --inclusion the proof of `audit inclusion ... --json` against
CHECKPOINT's root. Every --must-fail file is a tampered or forged checkpoint that the
library must refuse. Prints one line per check and `N passed, M failed`; exit 1 on a
failure.
"""

import base64
import json
import sys

from aics_tlog import parse_note, read_vkey_file, verify_consistency, verify_inclusion
from aics_tlog.checkpoint import checkpoint_from_note, verify_checkpoint


def b64(s):
    return base64.b64decode(s, validate=True)


def open_checkpoint(path, key):
    with open(path, "rb") as f:
        raw = f.read()
    note = parse_note(raw)
    res = verify_checkpoint(note, key, expected_origin=key.name)
    cp, _ = checkpoint_from_note(note)
    return res, cp


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    checkpoint, keyfile, rest = argv[0], argv[1], argv[2:]
    with open(keyfile) as f:
        key = read_vkey_file(f.read())
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail else ""))

    res, cp = open_checkpoint(checkpoint, key)
    check("checkpoint signature and origin", res.ok, res.error or f"{cp.origin} size {cp.size}")
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag == "--consistency":
            with open(rest[i + 1]) as f:
                proof = json.load(f)
            old_res, old = open_checkpoint(rest[i + 2], key)
            check("old checkpoint signature", old_res.ok, old_res.error or "")
            ok = verify_consistency(
                old.size, cp.size, old.root, cp.root, [b64(h) for h in proof["proof"]]
            )
            check(f"consistency proof {old.size} -> {cp.size}", ok)
            i += 3
        elif flag == "--inclusion":
            with open(rest[i + 1]) as f:
                proof = json.load(f)
            ok = proof["tree_size"] == cp.size and verify_inclusion(
                b64(proof["leaf_hash"]),
                proof["index"],
                cp.size,
                [b64(h) for h in proof["proof"]],
                cp.root,
            )
            check(f"inclusion proof of entry {proof['index']} in {cp.size}", ok)
            i += 2
        elif flag == "--must-fail":
            path = rest[i + 1]
            try:
                bad, _ = open_checkpoint(path, key)
                refused = not bad.ok
                why = bad.error or "accepted"
            except Exception as e:  # a parse error is a refusal too
                refused, why = True, f"{type(e).__name__}: {e}"
            check(f"refuses {path}", refused, why)
            i += 2
        else:
            print(f"unknown argument {flag}", file=sys.stderr)
            return 2
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
