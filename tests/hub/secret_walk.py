"""Run as a hub user's Unix user: every place that user can read holding a secret.

Reads the secret from stdin (so it is on no command line or environment of its own), walks the
folders named as arguments (regular files only, no symlinks; over ``--max-bytes`` skipped with a
note), then every ``/proc/<pid>/environ`` and ``/proc/<pid>/cmdline`` it can read, and prints
one JSON object: ``found`` (paths holding the secret), ``skipped`` (files too large to read),
``files`` (how many were read).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path


def readable_files(roots: list[str], max_bytes: int, skipped: list[str]) -> list[str]:
    files: list[str] = []
    for root in roots:
        for folder, dirs, names in os.walk(root, onerror=lambda _: None):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in ("/proc/sys", "/sys")]
            for name in names:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > max_bytes:
                    skipped.append(f"{path} ({info.st_size} bytes)")
                    continue
                files.append(path)
    return files


def holds(path: str, secret: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return secret in handle.read()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--max-bytes", type=int, default=4_000_000)
    args = parser.parse_args()
    secret = sys.stdin.read().strip().encode()
    if len(secret) < 16:
        raise SystemExit("give a secret of at least 16 characters on stdin")
    skipped: list[str] = []
    files = readable_files(args.roots, args.max_bytes, skipped)
    found = [path for path in dict.fromkeys(files) if holds(path, secret)]
    me = str(os.getpid())
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != me:
            for name in ("environ", "cmdline"):
                if holds(str(proc / name), secret):
                    found.append(str(proc / name))
    print(json.dumps({"found": found, "skipped": skipped, "files": len(files)}))


if __name__ == "__main__":
    main()
