#!/usr/bin/env bash
# Build the local base image of WakeDock's Dockerfile (this machine has no image registry):
# a Debian bookworm minbase root filesystem made by debootstrap with python3, python3-venv and
# ca-certificates, from the Debian mirror this host's apt uses, imported with `docker import`.
# In production the Dockerfile's BASE_IMAGE is a digest-pinned python:3.11-slim instead
# (docs/deploy.md, "The image").
#
# Idempotent: the tag is a hash of this script, so an image built by the same script is reused.
# Prints the image name on stdout; progress goes to stderr. Needs root (debootstrap) and Docker.
# Environment: DEBIAN_MIRROR (default: the first bookworm mirror in /etc/apt/sources.list*).
set -euo pipefail
cd "$(dirname "$0")/.."

REPOSITORY="wakedock-base/bookworm-python"
SUITE="bookworm"
PACKAGES="python3,python3-venv,ca-certificates"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"

progress() { echo "==> $*" >&2; }

tag=$(sha256sum scripts/build-base-image.sh | cut -c1-12)
image="$REPOSITORY:$tag"
if docker image inspect "$image" >/dev/null 2>&1; then
  progress "base image $image is already there"
  echo "$image"
  exit 0
fi

source scripts/_debian_mirror.sh
mirror=$(debian_mirror)
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root" >&2; exit 1; }

workdir=$(mktemp -d /var/tmp/wakedock-base.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"

progress "debootstrap $SUITE (minbase + $PACKAGES) from $mirror (about a minute)"
started=$SECONDS
# The Release file is checked against Debian's archive keyring: the packages are signed ones.
debootstrap --variant=minbase --include="$PACKAGES" --keyring="$KEYRING" \
  "$SUITE" "$rootfs" "$mirror" 2>&1 | sed -u 's/^/    /' >&2
progress "root filesystem ready in $((SECONDS - started)) s"

# What the image must not carry: downloaded packages, apt's lists, the build host's name and
# resolver (Docker provides both at run time), logs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/* "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname

progress "importing it as $image"
tar --numeric-owner -C "$rootfs" -c . |
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/usr/bin/python3"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES from $mirror" \
    - "$image" >/dev/null
progress "base image $image built in $((SECONDS - started)) s"
echo "$image"
