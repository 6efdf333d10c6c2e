#!/usr/bin/env bash
# Build WakeDock's container image from the Dockerfile at the repository root.
#
# Containers reach no registry here, so nothing is downloaded inside the build (it runs with
# --network none): this script first builds WakeDock and every dependency as wheels on the host
# (`pip wheel`, at the versions installed in the virtualenv the tests ran with), into
# build/image/wheels, the only directory .dockerignore lets into the build context; the image
# installs them with `pip install --no-index`.
#
# Environment (all optional):
#   BASE_IMAGE        the base (default: the local Debian one, scripts/build-base-image.sh; in
#                     production a digest-pinned python:3.11-slim, see docs/deploy.md)
#   IMAGE             the name to build; always rebuilt (Docker's layer cache still applies)
#   IMAGE_REPOSITORY  without IMAGE: the name is IMAGE_REPOSITORY:<version>-<hash of the inputs>
#                     (default repository: wakedock), reused when it exists
#   IMAGE_SOURCE      org.opencontainers.image.source (default: the git remote `origin`)
#   PYTHON            the interpreter whose pip builds the wheels (default .venv/bin/python)
# Prints the image name on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

progress() { echo "==> $*" >&2; }

base="${BASE_IMAGE:-$(./scripts/build-base-image.sh)}"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')

# What the image is made of: the Dockerfile, this script, the project and its sources, the base.
inputs_hash() {
  {
    sha256sum Dockerfile .dockerignore pyproject.toml README.md scripts/build-image.sh
    find src -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
    docker image inspect --format '{{.Id}}' "$base"
  } | sha256sum | cut -c1-12
}

if [ -n "${IMAGE:-}" ]; then
  image="$IMAGE"
else
  image="${IMAGE_REPOSITORY:-wakedock}:$version-$(inputs_hash)"
  if docker image inspect "$image" >/dev/null 2>&1; then
    progress "image $image is already there (same inputs)"
    echo "$image"
    exit 0
  fi
fi

wheels=build/image/wheels
rm -rf "$wheels"
mkdir -p "$wheels"
constraints=$(mktemp)
trap 'rm -rf "$constraints" "$wheels"' EXIT
# The versions the test suite ran with, for the dependencies' own dependencies too (pyproject
# pins only the direct ones); WakeDock itself comes from the source tree.
"$python" -m pip freeze --exclude-editable --disable-pip-version-check 2>/dev/null |
  grep -v -i '^wakedock[ =@]' >"$constraints" || true
progress "building WakeDock $version and its dependencies as wheels ($python, into $wheels)"
started=$SECONDS
"$python" -m pip wheel --disable-pip-version-check --quiet --constraint "$constraints" \
  --wheel-dir "$wheels" .
# Environment markers were read for the host's Python; the base's may differ (Debian's 3.11.2
# needs async-timeout for redis, 3.11.7 does not): complete the set for the base's version.
target=$(docker run --rm --network none --entrypoint python3 "$base" -c \
  'import platform; print(platform.python_version())')
for _ in 1 2 3; do
  more=$("$python" scripts/target_requirements.py "$wheels" "$target")
  [ -n "$more" ] || break
  progress "for Python $target also: $(echo $more)"
  # shellcheck disable=SC2086
  "$python" -m pip wheel --disable-pip-version-check --quiet --constraint "$constraints" \
    --find-links "$wheels" --wheel-dir "$wheels" $more
done
progress "$(ls "$wheels" | wc -l) wheels for Python $target in $((SECONDS - started)) s"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain -- src pyproject.toml Dockerfile 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
source_url="${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo unknown)}"

progress "docker build $image (base $base, no network)"
started=$SECONDS
docker build --network none --file Dockerfile \
  --build-arg "BASE_IMAGE=$base" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  --build-arg "SOURCE=$source_url" \
  --tag "$image" . >&2
progress "image $image built in $((SECONDS - started)) s"
echo "$image"
