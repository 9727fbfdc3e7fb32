"""The user servers: one spawner per single-machine mode, and the opt-in JupyterLab profile.

- *try it* (:class:`TryItSpawner`): every server runs as the hub's own Unix user, homes under
  the hub's data folder. No isolation between users.
- *one server, for real* (:class:`IsolatedSpawner`, hub as root): user ``alice`` runs as Unix
  user ``cl-alice``, created on first spawn (``useradd --create-home``, as The Littlest
  JupyterHub does), home mode 0700.

Both write, before each start, a fresh Voila token into the user's private folder
(``~/.consortium-hub``, 0700): ``voila.json`` makes Voila require it on its loopback port and
``jupyter_standalone_proxy_config.py`` (:mod:`consortium_hub.server_proxy_config`) makes the
proxy send it (``request_headers_override``). Both files are read from ``JUPYTER_CONFIG_DIR``,
so the token is on no command line.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import pwd
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, set_user_setuid
from tornado import web
from traitlets import Unicode

from consortium_lab.apps.voila import voila_env
from consortium_lab.apps.voila_config import command_settings

PRIVATE_DIR = ".consortium-hub"
TRUSTED_GROUP = "trusted"
PROFILES = {"chat": "Consortium chat (Voila)", "lab": "JupyterLab (group trusted only)"}
PROXY_CONFIG = Path(__file__).with_name("server_proxy_config.py")
UNIX_PREFIX = "cl-"
MAX_UNIX_NAME = 32


def unix_name(hub_name: str) -> str:
    """``cl-<name>``; a name too long for a Unix user gets a sha256 suffix (TLJH style)."""
    name = UNIX_PREFIX + hub_name
    if len(name) > MAX_UNIX_NAME:
        digest = hashlib.sha256(hub_name.encode()).hexdigest()[:5]
        name = f"{name[: MAX_UNIX_NAME - 6]}-{digest}"
    return name


def write_private_config(
    home: Path, uid: int, gid: int, voila: dict[str, dict[str, Any]] | None = None
) -> Path:
    """A fresh Voila token in ``home/.consortium-hub`` (0700, files 0600, owned by ``uid``),
    beside Voila's other settings ``voila`` (its dict settings, which the command line cannot
    carry); returns the folder, which becomes the server's ``JUPYTER_CONFIG_DIR``."""
    folder = home / PRIVATE_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chown(folder, uid, gid)
    os.chmod(folder, 0o700)
    token = secrets.token_hex(32)
    files = {
        "voila.json": json.dumps(_with_token(voila or {}, token)),
        "jupyter_standalone_proxy_config.py": PROXY_CONFIG.read_text(),
    }
    for name, content in files.items():
        path = folder / name
        # Created 0600 before the secret is written, never readable in between.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.chown(path, uid, gid)
        os.chmod(path, 0o600)
    return folder


def _with_token(settings: dict[str, dict[str, Any]], token: str) -> dict[str, dict[str, Any]]:
    merged = {cls: dict(values) for cls, values in settings.items()}
    merged.setdefault("Voila", {})["token"] = token
    return merged


def in_trusted_group(spawner: Any) -> bool:
    return any(group.name == TRUSTED_GROUP for group in spawner.user.groups)


def options_form(spawner: Any) -> str:
    """The profile choice, shown only to group ``trusted``: others get the chat straight away."""
    if not in_trusted_group(spawner):
        return ""
    choices = "".join(
        f'<option value="{key}">{html.escape(label)}</option>' for key, label in PROFILES.items()
    )
    return (
        f'<label for="profile">Server</label><select id="profile" name="profile">{choices}</select>'
    )


def options_from_form(form: dict[str, list[str]]) -> dict[str, str]:
    return {"profile": form.get("profile", ["chat"])[0]}


def spawn_error(status: int, message: str) -> web.HTTPError:
    """An error whose message the hub's error page shows as it is (JupyterHub replaces a
    failed spawn's message with a generic one unless it carries ``jupyterhub_message``)."""
    error = web.HTTPError(status, message.replace("%", "%%"))
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    return error


def pre_spawn_hook(spawner: Any) -> None:
    """Apply the chosen profile; JupyterLab only for group ``trusted``."""
    profile = spawner.user_options.get("profile", "chat")
    if profile not in PROFILES:
        raise spawn_error(400, f"Unknown server profile {profile!r}: choose chat or lab.")
    if profile == "lab":
        if not in_trusted_group(spawner):
            raise spawn_error(
                403,
                f"The JupyterLab profile is only for members of the hub group "
                f"'{TRUSTED_GROUP}'; {spawner.user.name} is not one.",
            )
        spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
        spawner.default_url = "/lab"


class _PrivateConfigMixin:
    """Writes the Voila token before each start and points ``JUPYTER_CONFIG_DIR`` at it."""

    log: Any

    def server_home(self) -> Path:
        raise NotImplementedError

    def server_ids(self) -> tuple[int, int]:
        raise NotImplementedError

    def prepare_home(self) -> None:
        """Create what the server needs before it starts (a Unix user, its home)."""

    async def start(self) -> Any:
        self.prepare_home()
        write_private_config(
            self.server_home(),
            *self.server_ids(),
            voila=command_settings(list(self.cmd)),  # type: ignore[attr-defined]
        )
        return await super().start()  # type: ignore[misc]

    def get_env(self) -> dict[str, str]:
        # JUPYTER_PATH gains the `consortium` Voila template, as for `consortium-lab demo`.
        env = voila_env(super().get_env())  # type: ignore[misc]
        env["JUPYTER_CONFIG_DIR"] = str(self.server_home() / PRIVATE_DIR)
        return env


class TryItSpawner(_PrivateConfigMixin, SimpleLocalProcessSpawner):
    """*Try it*: every user server runs as the hub's Unix user. No isolation between users."""

    def server_home(self) -> Path:
        return Path(self.home_dir)

    def server_ids(self) -> tuple[int, int]:
        return os.getuid(), os.getgid()

    def prepare_home(self) -> None:
        Path(self.home_dir).mkdir(mode=0o700, parents=True, exist_ok=True)


class IsolatedSpawner(_PrivateConfigMixin, LocalProcessSpawner):
    """*One server, for real*: hub user ``alice`` runs as Unix user ``cl-alice`` (home 0700)."""

    home_base = Unicode(
        "/home", config=True, help="The folder the ``cl-<name>`` home folders are created in."
    )

    @property
    def unix_user(self) -> str:
        return unix_name(self.user.name)

    def prepare_home(self) -> None:
        try:
            pwd.getpwnam(self.unix_user)
        except KeyError:
            self.log.info("Creating Unix user %s for %s", self.unix_user, self.user.name)
            subprocess.run(
                [
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    str(Path(self.home_base) / self.unix_user),
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    "--comment",
                    f"consortium hub user {self.user.name}",
                    self.unix_user,
                ],
                check=True,
                capture_output=True,
            )
        os.chmod(self.server_home(), 0o700)

    def server_home(self) -> Path:
        return Path(pwd.getpwnam(self.unix_user).pw_dir)

    def server_ids(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.unix_user)
        return entry.pw_uid, entry.pw_gid

    def make_preexec_fn(self, name: str) -> Any:
        return set_user_setuid(self.unix_user)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        entry = pwd.getpwnam(self.unix_user)
        env["USER"] = self.unix_user
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell or "/bin/sh"
        return env
