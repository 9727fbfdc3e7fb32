#!/usr/bin/env bash
# Make a Debian bookworm base image for hub/Dockerfile without a registry: debootstrap a
# minimal root file system and import it into podman as localhost/bookworm-min (about a
# minute or three). Needs root and `apt-get install -y podman debootstrap runc`.
set -euo pipefail
IMAGE="${1:-localhost/bookworm-min}"
CONF="$(mktemp -d)"
ROOTFS="$CONF/rootfs"
trap 'rm -rf "$CONF"' EXIT
# crun fails on these machines (cgroups in hybrid mode, rlimits): runc, cgroupfs, no ulimits.
printf '[containers]\ndefault_ulimits = []\n' > "$CONF/containers.conf"
export CONTAINERS_CONF="$CONF/containers.conf"
debootstrap --variant=minbase bookworm "$ROOTFS" >/dev/null
tar -C "$ROOTFS" -c . | podman --runtime runc --cgroup-manager=cgroupfs import - "$IMAGE"
