#!/usr/bin/env bash
# Write hub/requirements-gateway.txt and hub/requirements-singleuser.txt: every dependency of
# each image pinned, as pip resolves them for the image's own Python (Debian bookworm's 3.11.2:
# some releases need a newer 3.11), inside hub/Dockerfile's `python` stage, from the package
# index alone. Needs podman (docs/images.md); BASE as for the build.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${BASE:-localhost/bookworm-min}"
CA="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(mktemp)}"
[ -s "$CONTAINERS_CONF" ] || printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
podman=(podman --runtime runc --cgroup-manager=cgroupfs)
"${podman[@]}" build --quiet --network host --build-arg BASE="$BASE" -f hub/Dockerfile \
  --target python -t localhost/consortium-lab/python:pin . >/dev/null
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
pin() {  # target, what, pip requirement specs (the project is /src)...
  local target=$1 what=$2
  shift 2
  "${podman[@]}" run --rm --network host -v "$PWD:/src:ro" -v "$OUT:/out" \
    -v "$CA:/ca.crt:ro" -e PIP_CERT=/ca.crt localhost/consortium-lab/python:pin \
    pip install --quiet --dry-run --ignore-installed --report "/out/$target.json" "$@"
  python3 - "$OUT/$target.json" "$target" "$what" > "hub/requirements-$target.txt" <<'PY'
import json, sys

report, target, what = sys.argv[1:]
names = sorted(
    f"{i['metadata']['name'].lower()}=={i['metadata']['version']}"
    for i in json.load(open(report))["install"]
    if i["metadata"]["name"].lower() not in ("consortium-lab", "pip", "setuptools")
)
print(f"# Pinned dependencies of the {target} image (hub/Dockerfile): {what}")
print("# resolved for the image's Python. Regenerate with scripts/pin_image_requirements.sh.")
print("\n".join(names))
PY
}
pin gateway "consortium-lab[gateway,redis]" "/src[gateway,redis]"
pin singleuser "consortium-lab[app], jupyter-server-proxy[standalone], jupyterhub, jupyterlab" \
  "/src[app]" "jupyter-server-proxy[standalone]>=4.5" "jupyterhub>=5" "jupyterlab>=4"
