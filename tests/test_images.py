"""hub/Dockerfile built and run for real with podman (slow: minutes, see docs/images.md).

The gateway image streams a chat from the loopback model server with its provider key from a
mounted, read-only secret folder; the singleuser image's command is the one
``hub/k8s/values.yaml`` runs, and it serves the chat to Chromium on the host, which runs a demo
consortium, and runs the analytics pages as ``hub/k8s/analytics.yaml`` does; both run as uid
1000 and hold no ``.venv`` and no ``keys.json``.
Skipped, with the reason, where podman is not installed, unless ``CONSORTIUM_LAB_TEST_IMAGES=1``
(CI) makes a missing podman a failure.

Between runs (docs/images.md): podman's store keeps the layers; ``cache_dir()`` keeps the
debootstrap root file system and buildah's npm and pip cache mounts, so a store that lost the
images rebuilds without debootstrap and downloads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from consortium_lab.apps.ports import free_port

from fake_openai import FakeOpenAIServer, ModelScript

ROOT = Path(__file__).resolve().parents[1]
BASE = os.environ.get("CONSORTIUM_LAB_CONTAINER_BASE", "localhost/bookworm-min")
BUILD_TIMEOUT = 3600  # a cold build installs Debian's node and every pinned wheel
REQUIRED = os.environ.get("CONSORTIUM_LAB_TEST_IMAGES") == "1"
RUN = uuid.uuid4().hex[:12]

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.timeout(2 * BUILD_TIMEOUT)]


class Podman:
    """``podman`` with the flags that work on these machines (docs/images.md)."""

    def __init__(self, conf: Path, cache: Path) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        # buildah keeps ``RUN --mount=type=cache`` folders under $TMPDIR (default /var/tmp):
        # pointing it into the cache keeps npm's and pip's downloads with the base image.
        self.build_env = {**self.env, "TMPDIR": str(cache / "buildah")}
        (cache / "buildah").mkdir(parents=True, exist_ok=True)

    def ok(self, *args: str) -> bool:
        """Whether the command exits 0."""
        return self.run(*args, timeout=120).returncode == 0

    def run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", *args],
            env=self.build_env if args[0] == "build" else self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        out = self.run(*args, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {out.returncode}\n{out.stderr[-4000:]}")
        return out.stdout


def cache_dir() -> Path:
    """Where the base image's root file system and the build's download caches outlive a run:
    ``CONSORTIUM_LAB_CACHE``, else /var/cache/consortium-lab for root, else
    ~/.cache/consortium-lab (outside the clone, so a fresh clone finds them)."""
    if os.environ.get("CONSORTIUM_LAB_CACHE"):
        return Path(os.environ["CONSORTIUM_LAB_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/consortium-lab")
    return Path.home() / ".cache" / "consortium-lab"


def unavailable(reason: str) -> None:
    """Skip, saying why; a failure where CI asked for the images (CONSORTIUM_LAB_TEST_IMAGES=1)."""
    if REQUIRED:
        pytest.fail(f"CONSORTIUM_LAB_TEST_IMAGES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if shutil.which("podman") is None:
        unavailable("podman is not installed (apt-get install -y podman debootstrap runc)")
    if shutil.which("runc") is None:
        unavailable("runc is not installed (crun fails here: apt-get install -y runc)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    cache = cache_dir()
    run = Podman(conf, cache)
    if not run.ok("image", "exists", BASE):
        cached = (cache / "bookworm-min.rootfs.tar").is_file()
        if not cached and shutil.which("debootstrap") is None:
            unavailable(f"no base image {BASE} and no debootstrap to make one")
        subprocess.run(
            [str(ROOT / "scripts" / "container_base.sh"), BASE, str(cache)],
            check=True,
            timeout=1800,
            env=run.env,
        )
    return run


def ca_bundle() -> list[str]:
    """This machine's CA bundle as the build's ``ca`` secret: npm and pip in the build trust a
    TLS-inspecting proxy the host trusts (docs/images.md)."""
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return ["--secret", f"id=ca,src={candidate}"]
    return []


def build(podman: Podman, target: str) -> str:
    """Build ``target`` under a tag of this run's own: another checkout testing on the same
    podman store at the same time (CI beside a developer) cannot swap the image under it."""
    tag = f"localhost/consortium-lab/{target}:test-{RUN}"
    podman(
        "build",
        *ca_bundle(),
        "--network",
        "host",
        "--build-arg",
        f"BASE={BASE}",
        "-f",
        str(ROOT / "hub" / "Dockerfile"),
        "--target",
        target,
        "-t",
        tag,
        str(ROOT),
        timeout=BUILD_TIMEOUT,
    )
    return tag


def built(podman: Podman, target: str) -> Iterator[str]:
    tag = build(podman, target)
    yield tag
    # Untag only: the image and its layers stay as the next run's build cache.
    podman("untag", tag, tag, check=False)


@pytest.fixture(scope="module")
def gateway_image(podman: Podman) -> Iterator[str]:
    yield from built(podman, "gateway")


@pytest.fixture(scope="module")
def singleuser_image(podman: Podman) -> Iterator[str]:
    yield from built(podman, "singleuser")


def http(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.urlopen(
        urllib.request.Request(url, data=data, headers=headers), timeout=60
    )


@pytest.fixture
def provider() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer(max_lifetime=600).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_gateway_image_streams_a_chat_with_its_key_from_a_mounted_secret(
    podman: Podman, gateway_image: str, provider: FakeOpenAIServer, tmp_path: Path
) -> None:
    key = f"sk-test-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    provider.add_model("m", ModelScript(reply="Hello from the container.", api_key=key))
    secret = tmp_path / "llm"
    secret.mkdir()
    (secret / "keys.json").write_text(json.dumps({"provider": key}))
    (secret / "extra-openai-models.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "model_id": "m",
                    "model_name": "m",
                    "api_base": provider.base_url,
                    "api_key_name": "provider",
                }
            ]
        )
    )
    config = tmp_path / "gateway"
    config.mkdir()
    (config / "tokens.yaml").write_text(yaml.safe_dump({"tokens": {token: {"user": "alice"}}}))
    for path in (secret, config, *secret.iterdir(), *config.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the container's uid 1000 reads them
    port = free_port()
    name = f"consortium-gateway-{uuid.uuid4().hex[:8]}"
    podman(
        "run", "-d", "--rm", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/tmp", "--tmpfs", "/home/jovyan",
        "-v", f"{secret}:/etc/consortium/llm:ro", "-v", f"{config}:/etc/consortium/gateway:ro",
        "-e", "LLM_USER_PATH=/etc/consortium/llm", "-e", "CONSORTIUM_LAB_HOME=/tmp/consortium",
        gateway_image,
        "consortium-lab", "gateway", "--host", "127.0.0.1", "--port", str(port),
        "--tokens", "/etc/consortium/gateway/tokens.yaml",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with http(f"{base}/health") as health:
                    assert health.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                running = podman("ps", "-q", "--filter", f"name={name}").strip()
                logs = podman("logs", name, check=False)
                assert running, f"the gateway container exited:\n{logs}"
                assert time.monotonic() < deadline, f"no /health after 180 s:\n{logs}"
                time.sleep(0.5)
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
        with http(f"{base}/v1/chat/completions", body, token) as reply:
            lines = reply.read().decode().splitlines()
        text = "".join(
            chunk["choices"][0]["delta"].get("content") or ""
            for line in lines
            if line.startswith("data: {")
            for chunk in [json.loads(line[6:])]
            if chunk.get("choices")
        )
        assert text == "Hello from the container."
        assert provider.requests[-1].headers["Authorization"] == f"Bearer {key}"
        uid = podman("exec", name, "id", "-u").strip()
        assert uid == "1000"
        assert key not in podman("logs", name, check=False)
    finally:
        podman("rm", "-f", name, check=False)


def test_the_singleuser_command_is_the_one_the_values_run(
    podman: Podman, singleuser_image: str
) -> None:
    script = (
        "import json; from consortium_lab.apps.hub import standalone_proxy_command as c; "
        "print(json.dumps(c()))"
    )
    command = json.loads(podman("run", "--rm", singleuser_image, "python", "-c", script))
    values = yaml.safe_load((ROOT / "hub" / "k8s" / "values.yaml").read_text())
    assert command == values["singleuser"]["cmd"]
    voila = json.loads(
        podman("run", "--rm", singleuser_image, "cat", "/opt/consortium/etc/jupyter/voila.json")
    )
    assert voila  # Voila's dict settings for that command (kernel pools)
    assert podman("run", "--rm", singleuser_image, "id", "-u").strip() == "1000"
    home = podman("run", "--rm", singleuser_image, "sh", "-c", "echo $HOME; pwd").split()
    assert home == ["/home/jovyan", "/home/jovyan"]


@pytest.mark.parametrize("target", ["gateway", "singleuser"])
def test_no_key_and_no_virtual_environment_in_the_images(
    podman: Podman, target: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(f"{target}_image")
    found = podman(
        "run", "--rm", "--user", "0", image, "find", "/", "-xdev",
        "(", "-name", ".venv", "-o", "-name", "keys.json", "-o", "-name", ".env", ")", "-print",
    )  # fmt: skip
    assert found.split() == []
    config = json.loads(podman("image", "inspect", image))[0]["Config"]
    assert config["User"] == "1000"
    assert not [e for e in config.get("Env", []) if "KEY=" in e or "TOKEN=" in e]


def test_the_singleuser_container_serves_the_chat_to_chromium(
    podman: Podman, singleuser_image: str
) -> None:
    """The values' user-server command in the container (the hub's login replaced by
    ``--no-authentication``: no hub runs here), Chromium on the host, a demo consortium run."""
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    import chromium
    from e2e.test_chat_e2e import ask, last_turn, wait_status

    if not chromium.CHROMIUM.exists():
        pytest.skip(chromium.MISSING)
    values = yaml.safe_load((ROOT / "hub" / "k8s" / "values.yaml").read_text())
    proxy, *rest = values["singleuser"]["cmd"]
    port = free_port()
    name = f"consortium-singleuser-{uuid.uuid4().hex[:8]}"
    podman(
        "run", "-d", "--rm", "--name", name, "--network", "host",
        "-e", "CONSORTIUM_LAB_DEMO_DELAY=0",
        singleuser_image,
        proxy, "--no-authentication", f"--port={port}", "--address=127.0.0.1",
        "--base-url=/user/alice/", *rest,
    )  # fmt: skip
    try:
        with chromium.launch() as browser:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            url = f"http://127.0.0.1:{port}/user/alice/voila/render/chat.ipynb"
            deadline = time.monotonic() + 240
            while True:  # the proxy starts Voila (and its preheated kernel) lazily
                try:
                    page.goto(url)
                    page.wait_for_selector(".cl-root[data-ready='true']", timeout=180_000)
                    break
                except Exception:
                    logs = podman("logs", name, check=False)
                    assert time.monotonic() < deadline, f"no chat page:\n{logs[-4000:]}"
                    time.sleep(2)
            ask(page, "Why is the sky blue?")
            turn = last_turn(page)
            status = wait_status(page, turn, "completed", "failed", timeout=180_000)
            assert status == "completed"
            expect(turn.locator(".cl-synthesis-text").first).not_to_be_empty()
        assert podman("exec", name, "id", "-u").strip() == "1000"
    finally:
        podman("rm", "-f", name, check=False)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_the_analytics_pages_run_as_the_manifest_runs_them(
    podman: Podman, singleuser_image: str
) -> None:
    """``hub/k8s/analytics.yaml``'s command and environment in the image it names (secrets as
    stand-ins, loopback for 0.0.0.0 on the host network): a visitor is sent to the hub's
    login, and the chart bundle is served."""
    (deployment,) = [
        d
        for d in yaml.safe_load_all((ROOT / "hub" / "k8s" / "analytics.yaml").read_text())
        if d and d["kind"] == "Deployment"
    ]
    (spec,) = deployment["spec"]["template"]["spec"]["containers"]
    assert spec["image"].endswith("/consortium-lab/singleuser:0.1.0")
    env = [
        arg
        for e in spec["env"]
        for arg in ("-e", f"{e['name']}={e.get('value', 'stand-in-' + e['name'].lower())}")
    ]
    *command, manifest_port, address = spec["command"]
    assert (manifest_port, address) == ("8760", "0.0.0.0")
    port = free_port()
    name = f"consortium-analytics-{uuid.uuid4().hex[:8]}"
    podman(
        "run", "-d", "--rm", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/tmp", *env, singleuser_image, *command, str(port), "127.0.0.1",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/services/consortium-analytics/"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                opener.open(base, timeout=60)
                raise AssertionError("the overview answered without a login")
            except urllib.error.HTTPError as exc:
                redirect = exc
                break
            except (urllib.error.URLError, ConnectionError):
                logs = podman("logs", name, check=False)
                assert podman("ps", "-q", "--filter", f"name={name}").strip(), logs
                assert time.monotonic() < deadline, f"no answer after 180 s:\n{logs}"
                time.sleep(0.5)
        assert redirect.code == 302
        assert "/hub/api/oauth2/authorize" in redirect.headers["Location"]
        assert "client_id=service-consortium-analytics" in redirect.headers["Location"]
        with opener.open(base + "static/chart.js", timeout=60) as bundle:
            assert bundle.status == 200 and len(bundle.read()) > 1000
        assert podman("exec", name, "id", "-u").strip() == "1000"
    finally:
        podman("rm", "-f", name, check=False)
