"""hub/Dockerfile's build context: what .dockerignore leaves holds no environment and no
key-like string (fast; the images themselves are built in tests/test_images.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parents[1]
KEY_LIKE = re.compile(
    rb"sk-[A-Za-z0-9_-]{16,}|BEGIN [A-Z ]*PRIVATE KEY|ghp_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}"
)


def ignored() -> pathspec.PathSpec:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return pathspec.PathSpec.from_lines("gitignore", lines)


def context_files() -> list[Path]:
    spec = ignored()
    return [
        path
        for path in ROOT.rglob("*")
        if path.is_file() and not spec.match_file(path.relative_to(ROOT).as_posix())
    ]


def test_environments_and_secrets_stay_out_of_the_context() -> None:
    spec = ignored()
    for name in (
        ".venv/bin/python",
        "widgets/node_modules/esbuild/package.json",
        "keys.json",
        "hub/keys.json",
        ".env",
        "hub/gateway.env",
        ".git/config",
    ):
        assert spec.match_file(name), name
    for needed in ("pyproject.toml", "src/consortium_lab/runs.py", "widgets/package-lock.json"):
        assert not spec.match_file(needed), needed


def test_the_context_holds_no_key_like_string() -> None:
    files = context_files()
    assert ROOT / "hub" / "Dockerfile" in files
    hits = [str(p.relative_to(ROOT)) for p in files if KEY_LIKE.search(p.read_bytes())]
    assert hits == []
    # The pattern finds a key where one is.
    assert KEY_LIKE.search(b"OPENAI_API_KEY=sk-" + b"a1" * 12)
