#!/usr/bin/env bash
# Make a Debian bookworm base image for hub/Dockerfile without a registry: debootstrap a
# minimal root file system and import it into podman as IMAGE (default localhost/bookworm-min).
# Needs root and `apt-get install -y podman debootstrap runc`.
#
#   scripts/container_base.sh [IMAGE [CACHE_DIR]]
#
# With CACHE_DIR (CI passes /var/cache/consortium-lab), the root file system is kept there as
# bookworm-min.rootfs.tar: a later run whose podman store lost the image imports that tar in
# seconds instead of debootstrapping again (one to three minutes).
set -euo pipefail
IMAGE="${1:-localhost/bookworm-min}"
CACHE="${2:-}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# crun fails on these machines (cgroups in hybrid mode, rlimits): runc, cgroupfs, no ulimits.
printf '[containers]\ndefault_ulimits = []\n' > "$WORK/containers.conf"
export CONTAINERS_CONF="$WORK/containers.conf"
TAR="$WORK/rootfs.tar"
if [ -n "$CACHE" ] && [ -s "$CACHE/bookworm-min.rootfs.tar" ]; then
  TAR="$CACHE/bookworm-min.rootfs.tar"
  echo "container_base: importing the cached $TAR" >&2
else
  debootstrap --variant=minbase bookworm "$WORK/rootfs" >/dev/null
  tar -C "$WORK/rootfs" -cf "$TAR" .
  if [ -n "$CACHE" ]; then
    mkdir -p "$CACHE"
    # Written beside, then renamed: an interrupted run never leaves a truncated tar to import.
    cp "$TAR" "$CACHE/bookworm-min.rootfs.tar.part"
    mv "$CACHE/bookworm-min.rootfs.tar.part" "$CACHE/bookworm-min.rootfs.tar"
  fi
fi
podman --runtime runc --cgroup-manager=cgroupfs import "$TAR" "$IMAGE" >/dev/null
