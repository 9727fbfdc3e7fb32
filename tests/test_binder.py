"""The Binder files in ``binder/``: what repo2docker needs (runtime, requirements, postBuild,
start) and, in the slow test, the real thing: a fresh virtual environment installed from
``binder/requirements.txt`` (pip's own cache is reused), ``postBuild`` run in it, then
``binder/start`` wrapping an nbclient run of the chat and quickstart notebooks with no network
(a network namespace with only loopback, where the test runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def test_runtime_satisfies_requires_python():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-")
    version = runtime.removeprefix("python-")
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version in SpecifierSet(required), (version, required)


def test_binder_files_have_the_shape_repo2docker_needs():
    lines = [
        line.strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [".[app]"]  # with a binder/ folder the repository is not installed by itself
    for name in ("postBuild", "start"):
        path = BINDER / name
        assert os.access(path, os.X_OK), f"binder/{name} must be executable"
        assert path.read_text().startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in (BINDER / "postBuild").read_text()
    start = [line for line in (BINDER / "start").read_text().splitlines() if line.strip()]
    assert start[-1] == 'exec "$@"'
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/badge_logo.svg" in readme
    assert "urlpath=voila%2Frender%2Fnotebooks%2Fchat.ipynb" in readme


def _isolated(command: list[str]) -> list[str]:
    """``command`` in a network namespace with only loopback up, when this process may make
    one (root with unshare); else as it is (the environment's proxies then point nowhere)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if os.geteuid() != 0 or unshare is None or ip is None:
        return command
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        return command
    return [unshare, "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh", *command]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_environment_runs_the_notebooks_offline(tmp_path):
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # As repo2docker does: from the repository root, so ".[app]" is this project.
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONSORTIUM_LAB", "LLM_", "JUPYTER", "VIRTUAL_ENV", "OPENAI"))
    }
    env.update(
        PATH=f"{env_dir / 'bin'}:{env['PATH']}",
        HOME=str(tmp_path / "home"),
        PYTHON=str(python),
        HTTP_PROXY="http://127.0.0.1:9",  # a closed port: a request that escapes fails
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
    )
    (tmp_path / "home").mkdir()
    built = subprocess.run(
        [str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    prefix = Path(
        subprocess.check_output(
            [str(python), "-c", "import sys; print(sys.prefix)"], text=True
        ).strip()
    )
    assert (prefix / "share/jupyter/voila/templates/consortium/conf.json").is_file()

    shown = subprocess.run(
        [str(BINDER / "start"), "sh", "-c", "echo $CONSORTIUM_LAB_HOME"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.stdout.strip() == str(tmp_path / "home" / ".consortium_lab")
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work)
    run = subprocess.run(
        _isolated(
            [
                str(BINDER / "start"),
                str(env_dir / "bin" / "jupyter"),
                "execute",
                "--kernel_name=python3",
                str(work / "chat.ipynb"),
                str(work / "quickstart.ipynb"),
            ]
        ),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # nbclient stops with a non-zero status at the first cell that raises.
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stderr.count("Executing notebook with kernel: python3") == 2
