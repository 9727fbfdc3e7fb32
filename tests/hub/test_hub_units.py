"""The hub's parts without a running hub: the user server's command line through the proxy's
own template expansion, the settings' one message, Unix names, the private config files, and
the configuration the hub would run with."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from consortium_lab.apps.hub import standalone_proxy_command
from consortium_lab.apps.voila import voila_command
from consortium_lab.apps.voila_config import command_settings

from .conftest import HUB, hub_env

CONFIG = HUB / "jupyterhub_config.py"

sys.path.insert(0, str(HUB))
settings_mod = pytest.importorskip("consortium_hub.settings")
pytest.importorskip("jupyter_server_proxy.standalone")


def test_the_proxy_expands_the_command_back_into_voilas_arguments():
    from jupyter_server_proxy.handlers import SuperviseAndProxyHandler
    from jupyter_server_proxy.standalone.app import StandaloneProxyServer

    command = standalone_proxy_command(pool_size=2)
    assert Path(command[0]).name == "jupyter-standaloneproxy"
    app = StandaloneProxyServer()
    app.parse_command_line(command[1:])
    assert app.absolute_url is True
    assert app.activity_interval == 0
    assert "--VoilaConfiguration.extension_denylist=@jupyterhub/jupyter-server-proxy" in (
        app.command
    )

    class Expander:
        # What the proxy's handler fills in: its port, and the hub's prefix without the slash.
        process_args: ClassVar[dict[str, object]] = {
            "port": 43210,
            "unix_socket": "",
            "base_url": "/user/alice",
        }
        _render_template = SuperviseAndProxyHandler._render_template

    expanded = Expander()._render_template(app.command)
    assert expanded == voila_command(43210, pool_size=2, base_url="/user/alice/", side_files=False)
    # The dict settings travel in the server's own voila.json, its pools matching the command.
    pools = command_settings(expanded)["VoilaKernelManager"]["kernel_pools_config"]
    assert pools["chat.ipynb"] == {"pool_size": 2}
    assert not any("{" in a for a in expanded)  # no JSON left on the command line


def test_every_missing_or_malformed_setting_is_reported_in_one_message():
    env = {
        "CONSORTIUM_HUB_MODE": "sandbox",
        "CONSORTIUM_HUB_AUTH": "oidc",
        "CONSORTIUM_HUB_GATEWAY_TOKEN": "short",
        "CONSORTIUM_HUB_IDLE_TIMEOUT": "soon",
        "CONSORTIUM_HUB_ALLOWED_USERS": "alice,Bob Smith",
        "CONSORTIUM_HUB_PUBLIC_URL": "chat.example.org",
        "CONSORTIUM_HUB_TYPO": "1",
    }
    with pytest.raises(settings_mod.SettingsError) as info:
        settings_mod.read_settings(env)
    message = str(info.value)
    for expected in (
        "CONSORTIUM_HUB_MODE='sandbox'",
        "CONSORTIUM_HUB_DATA_DIR is not set",
        "CONSORTIUM_HUB_OAUTH_CLIENT_ID is not set",
        "CONSORTIUM_HUB_OIDC_AUTHORIZE_URL is not set",
        "CONSORTIUM_HUB_GATEWAY_URL is not set",
        "CONSORTIUM_HUB_GATEWAY_TOKEN: too short",
        "CONSORTIUM_HUB_IDLE_TIMEOUT='soon'",
        "CONSORTIUM_HUB_ALLOWED_USERS: Bob Smith",
        "CONSORTIUM_HUB_PUBLIC_URL='chat.example.org'",
        "CONSORTIUM_HUB_TYPO: unknown variable",
    ):
        assert expected in message
    assert message.startswith("consortium hub: ")


def test_the_hub_exits_non_zero_with_one_message(tmp_path: Path):
    env = hub_env(tmp_path, 1, 2)
    del env["CONSORTIUM_HUB_GATEWAY_URL"]
    env["CONSORTIUM_HUB_AUTH"] = "saml"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(CONFIG)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.count("consortium hub: ") == 1
    assert "CONSORTIUM_HUB_AUTH='saml'" in done.stderr
    assert "CONSORTIUM_HUB_GATEWAY_URL is not set" in done.stderr
    assert not (tmp_path / "data" / "jupyterhub.sqlite").exists()


def test_docs_list_every_variable():
    docs = (HUB.parent / "docs" / "hub.md").read_text()
    missing = [v for v in settings_mod.VARIABLES if f"CONSORTIUM_HUB_{v}" not in docs]
    assert not missing


def test_unix_names_are_prefixed_and_hashed_when_long():
    from consortium_hub.spawners import unix_name

    assert unix_name("alice") == "cl-alice"
    long = "a" * 32
    name = unix_name(long)
    assert len(name) == 32 and name.startswith("cl-aaaa") and name != unix_name("a" * 31 + "b")
    assert unix_name("a" * 29) == "cl-" + "a" * 29


def test_private_config_is_private_and_the_proxy_sends_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from consortium_hub.spawners import write_private_config
    from jupyter_server_proxy.standalone.app import StandaloneProxyServer

    folder = write_private_config(tmp_path, os.getuid(), os.getgid())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = json.loads((folder / "voila.json").read_text())["Voila"]["token"]
    assert len(token) == 64
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    app = StandaloneProxyServer()
    app.load_config_file()
    assert app.request_headers_override == {"Authorization": f"token {token}"}
    # The root answers with the chat; no page may be framed.
    (rewrite,) = app.rewrite_response
    response = SimpleNamespace(code=200, reason="OK", headers={}, body=b"tree")
    rewrite(SimpleNamespace(method="GET", path="/user/alice/"), response)
    assert (response.code, response.body) == (302, b"")
    assert response.headers["Location"] == "/user/alice/voila/render/chat.ipynb"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    page = SimpleNamespace(code=200, reason="OK", headers={}, body=b"chat")
    rewrite(SimpleNamespace(method="GET", path="/user/alice/voila/render/chat.ipynb"), page)
    assert (page.code, page.body) == (200, b"chat")
    # A new start, a new token.
    write_private_config(tmp_path, os.getuid(), os.getgid())
    assert json.loads((folder / "voila.json").read_text())["Voila"]["token"] != token


def test_the_configuration_the_hub_runs_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from consortium_hub.configure import configure
    from traitlets.config import Config

    env = hub_env(tmp_path, 8000, 8001, CONSORTIUM_HUB_PUBLIC_URL="https://chat.example.org")
    settings = settings_mod.read_settings(env)
    c = Config()
    configure(c, settings)
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert roles["user"]["scopes"] == ["self", "access:services!service=consortium-gateway"]
    assert roles["consortium-gateway"]["scopes"] == ["read:users:groups"]
    assert set(roles["idle-culler"]["scopes"]) == {
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    }
    assert "access:services!service=consortium-gateway" in c.Spawner.server_token_scopes
    gateway = env["CONSORTIUM_HUB_GATEWAY_URL"].rstrip("/") + "/services/consortium-gateway/"
    assert c.Spawner.environment == {
        "CONSORTIUM_LAB_GATEWAY_URL": gateway,
        "CONSORTIUM_LAB_CHAT_KERNEL": "1",
        "LLM_LOAD_PLUGINS": "",
    }
    assert c.JupyterHub.shutdown_on_logout is True
    assert c.JupyterHub.cleanup_servers is False and c.JupyterHub.cleanup_proxy is False
    assert c.JupyterHub.public_url == "https://chat.example.org"
    assert c.Authenticator.username_pattern == settings_mod.USERNAME_PATTERN
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["consortium-gateway"]["api_token"] == env["CONSORTIUM_HUB_GATEWAY_TOKEN"]
    assert "command" not in services["consortium-gateway"]
    assert "--activity-interval=0" in c.Spawner.cmd
    for name in ("jupyterhub.sqlite", "proxy_auth_token"):
        assert stat.S_IMODE((settings.data_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700


def test_the_operators_retention_reaches_the_user_servers(tmp_path):
    from consortium_hub.configure import configure
    from traitlets.config import Config

    c = Config()
    configure(c, settings_mod.read_settings(hub_env(tmp_path / "a", 8000, 8001)))
    assert "CONSORTIUM_LAB_RETENTION_DAYS" not in c.Spawner.environment
    env = hub_env(tmp_path / "b", 8000, 8001, CONSORTIUM_HUB_RETENTION_DAYS="30")
    c = Config()
    configure(c, settings_mod.read_settings(env))
    assert c.Spawner.environment["CONSORTIUM_LAB_RETENTION_DAYS"] == "30"
    for bad, why in (("0", "expected 1 to 36500"), ("-3", "expected 1"), ("1.5", "whole")):
        env = hub_env(tmp_path / "c", 8000, 8001, CONSORTIUM_HUB_RETENTION_DAYS=bad)
        with pytest.raises(
            settings_mod.SettingsError, match=f"CONSORTIUM_HUB_RETENTION_DAYS.*{why}"
        ):
            settings_mod.read_settings(env)


def test_the_gateway_folder_is_private_and_a_closed_parent_is_named(tmp_path: Path):
    from consortium_lab.apps.hub_gateway import (
        closed_parent,
        gateway_account,
        gateway_process_options,
        require_reachable_python,
        write_gateway_folder,
    )

    # Under a folder others may pass (pytest's own temporary folders are 0700).
    base = Path(tempfile.mkdtemp(prefix="cl-unit-"))
    try:
        os.chmod(base, 0o755)
        assert closed_parent(base / "a" / "b") is None
        closed = base / "closed"
        closed.mkdir(mode=0o700)
        assert closed_parent(closed / "a" / "b") == closed
        with pytest.raises(RuntimeError, match=f"below {closed}, which Unix user consortium-gat"):
            gateway_account(closed / "gateway")
        assert not (closed / "gateway").exists()  # refused before anything was made
        # A venv's python is a link: the real interpreter's folders are the ones that count.
        interpreter = closed / "bin" / "python3"
        interpreter.parent.mkdir()
        interpreter.write_text("")
        link = base / "python"
        link.symlink_to(interpreter)
        with pytest.raises(RuntimeError, match=f"environment at {interpreter} is below {closed}"):
            require_reachable_python(link)
        os.chmod(closed, 0o711)
        require_reachable_python(link)
    finally:
        shutil.rmtree(base)

    folder = tmp_path / "gw"
    config = write_gateway_folder(
        folder,
        {"auth": "hub"},
        keys={"openai": "sk-unit-secret"},
        llm_files={"extra-openai-models.yaml": "[]\n"},
    )
    assert json.loads(config.read_text()) == {"auth": "hub"}
    for path in (folder, folder / "llm"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (config, folder / "llm" / "keys.json", folder / "llm" / "extra-openai-models.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert json.loads((folder / "llm" / "keys.json").read_text()) == {"openai": "sk-unit-secret"}
    env, options = gateway_process_options({"PATH": "/usr/bin"}, folder)
    assert env["LLM_USER_PATH"] == str(folder / "llm")
    assert env["CONSORTIUM_LAB_HOME"] == str(folder) and env["PATH"] == "/usr/bin"
    assert options == {"cwd": str(folder), "umask": 0o077}  # no owner: no user switch


def test_the_operators_llm_keys_are_copied_and_a_broken_key_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from consortium_lab.apps.hub_gateway import own_llm_setup

    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path))
    assert own_llm_setup() == {"keys": {}, "llm_files": {}}
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"// Note": "This file stores secret API credentials.", "a": "k"}))
    (tmp_path / "extra-openai-models.yaml").write_text("- model_id: x\n")
    assert own_llm_setup() == {
        "keys": {"a": "k"},
        "llm_files": {"extra-openai-models.yaml": "- model_id: x\n"},
    }
    for broken in ("{not json", "[]"):
        keys.write_text(broken)
        with pytest.raises(RuntimeError, match=f"{keys} is not a JSON object of llm keys"):
            own_llm_setup()
