#!/usr/bin/env bash
# Build, or restore from its cached archive, the arm64 Debian rootfs of the `rpi4-emulated` target:
# Debian bookworm (python 3.11) for aarch64, run under qemu-user through binfmt_misc, with a venv holding
# the aarch64 wheels of onnxruntime, ai-edge-litert, numpy and psutil. Needs root (debootstrap, chroot, mount).
# Built once (~5-10 min on 2 cores), then restored from $CACHE/arm64-rootfs-v1.tar.zst in seconds.
# Prints the rootfs path on its last line.
set -euo pipefail

CACHE=${EDGE_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-harness}
ROOTFS=${EDGE_HARNESS_ARM64_ROOTFS:-$CACHE/arm64-rootfs}
ARCHIVE=$CACHE/arm64-rootfs-v1.tar.zst
WHEELS=$CACHE/arm64-wheels
MARKER=$ROOTFS/.edge-harness-rootfs-v1
PACKAGES="onnxruntime ai-edge-litert numpy psutil"

say() { echo "arm64-rootfs: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot, mount)"; exit 2; }

missing=()
for tool in qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support debootstrap:debootstrap zstd:zstd; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { say "binfmt_misc has no qemu-aarch64 entry"; exit 2; }

if [ -f "$MARKER" ]; then echo "$ROOTFS"; exit 0; fi
mkdir -p "$CACHE"
if [ -f "$ARCHIVE" ]; then
  say "restoring $ARCHIVE"
  rm -rf "$ROOTFS" && mkdir -p "$ROOTFS"
  tar --zstd -xpf "$ARCHIVE" -C "$ROOTFS"
  echo "$ROOTFS"; exit 0
fi

MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BUILD=$ROOTFS.build
rm -rf "$BUILD"
say "debootstrap (first stage) from $MIRROR"
debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$BUILD" "$MIRROR" >/dev/null
say "debootstrap (second stage, emulated)"
chroot "$BUILD" /debootstrap/debootstrap --second-stage >/dev/null

say "downloading aarch64 wheels: $PACKAGES"
python3 -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 \
  --platform manylinux2014_aarch64 -d "$WHEELS" $PACKAGES
mkdir -p "$BUILD/tmp/wheels" && cp "$WHEELS"/*.whl "$BUILD/tmp/wheels/"
say "installing them into /opt/edge-venv (emulated pip)"
chroot "$BUILD" /usr/bin/python3 -m venv /opt/edge-venv
chroot "$BUILD" /opt/edge-venv/bin/python -m pip install -q --no-index --find-links /tmp/wheels $PACKAGES
rm -rf "$BUILD/tmp/wheels" "$BUILD/var/cache/apt/archives"/*.deb
touch "$BUILD/.edge-harness-rootfs-v1"
rm -rf "$ROOTFS" && mv "$BUILD" "$ROOTFS"
say "packing $ARCHIVE"
tar --zstd -cpf "$ARCHIVE.part" -C "$ROOTFS" . && mv "$ARCHIVE.part" "$ARCHIVE"
echo "$ROOTFS"
