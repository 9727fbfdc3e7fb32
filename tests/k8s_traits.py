"""The hub classes at the versions the Zero to JupyterHub chart's hub image pins, for the trait
checks of ``hub/k8s/values.yaml`` (tests/test_k8s.py).

The test environment carries a newer jupyterhub (the `hub` extra), whose traits differ from the
chart's, so the check runs as a subprocess in a small virtual environment holding only
``PINS``: built once under ``.cache/`` in the repository (gitignored), or under
``$CONSORTIUM_LAB_CACHE`` when set (CI sets /var/cache/consortium-lab, so a fresh clone reuses
it), its folder named by a hash of the pins and the Python version, so changing a pin builds a
new one.

Run as a script (inside that environment) it reads ``{"items": [[class, key, value, where],
...]}`` on stdin and prints ``{"versions": {...}, "problems": [...]}``: the versions it loaded
and, for each item its trait refuses, one line naming the YAML path and the nearest trait.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# The chart's hub image (z2jh 4.x, images/hub/requirements.txt).
PINS = {"jupyterhub": "5.5.0", "jupyterhub-kubespawner": "7.1.0", "oauthenticator": "17.4.0"}
CLASSES = {
    "JupyterHub": ("jupyterhub.app", "JupyterHub"),
    "Authenticator": ("jupyterhub.auth", "Authenticator"),
    "GenericOAuthenticator": ("oauthenticator.generic", "GenericOAuthenticator"),
    "KubeSpawner": ("kubespawner", "KubeSpawner"),
}
INSTALL_TIMEOUT = 1800  # a loaded machine resolving and installing about 40 wheels


def pinned_python(root: Path) -> Path:
    """The Python of the pinned environment under ``root/.cache``, built on first use.

    A lock file serialises concurrent builders; ``complete`` is written last, so a build cut
    short is started over rather than used.
    """
    spec = json.dumps([sorted(PINS.items()), sys.version_info[:2]]).encode()
    cache = Path(os.environ.get("CONSORTIUM_LAB_CACHE") or root / ".cache")
    home = cache / f"k8s-traits-{hashlib.sha256(spec).hexdigest()[:12]}"
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{home}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "complete").is_file():
            shutil.rmtree(home, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=600)
            pins = [f"{name}=={version}" for name, version in PINS.items()]
            out = subprocess.run(
                [str(home / "bin" / "python"), "-m", "pip", "install", "-q", *pins],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
            if out.returncode != 0:
                raise RuntimeError(f"pip install {' '.join(pins)} failed:\n{out.stderr[-4000:]}")
            (home / "complete").write_text("\n".join(pins) + "\n")
    return home / "bin" / "python"


def check(root: Path, items: list[tuple[str, str, Any, str]]) -> dict[str, Any]:
    """Each ``(class, key, value, where)`` checked by the pinned classes: ``{"versions":
    {distribution: version}, "problems": [line, ...]}``."""
    out = subprocess.run(
        [str(pinned_python(root)), "-I", __file__],  # -I: not tests/ on sys.path
        input=json.dumps({"items": items}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the pinned trait check failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def trait_problem(cls: type, key: str, value: Any, where: str) -> str | None:
    """Why ``value`` cannot be ``cls.key`` (naming the YAML path and the nearest trait), or
    None when the trait takes it."""
    from traitlets import HasTraits, TraitError

    traits = cls.class_traits(config=True)  # type: ignore[attr-defined]
    if key not in traits:
        near = difflib.get_close_matches(key, traits, n=1)
        hint = f" (nearest trait: {near[0]})" if near else ""
        return f"{where}: {cls.__name__} has no configurable trait {key!r}{hint}"
    probe = type("Probe", (HasTraits,), {})()
    try:
        traits[key].validate(probe, value)
    except TraitError as exc:
        return f"{where}: {exc}"
    return None


def main() -> None:
    """Inside the pinned environment: read the items on stdin, print the result."""
    import importlib
    from importlib.metadata import version

    classes = {
        name: getattr(importlib.import_module(module), attr)
        for name, (module, attr) in CLASSES.items()
    }
    problems = []
    for name, key, value, where in json.load(sys.stdin)["items"]:
        if name not in classes:
            problems.append(f"{where}: no class {name!r} is checked (known: {sorted(classes)})")
            continue
        problem = trait_problem(classes[name], key, value, where)
        if problem:
            problems.append(problem)
    versions = {name: version(name) for name in PINS}
    json.dump({"versions": versions, "problems": problems}, sys.stdout)


if __name__ == "__main__":
    main()
