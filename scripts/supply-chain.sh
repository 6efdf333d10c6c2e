#!/usr/bin/env bash
# The supply chain of the image's Python environment (docs/deploy.md, "Supply chain"):
#   1. its CycloneDX SBOM (cyclonedx-py), into test-output/sbom.cdx.json;
#   2. pip-audit over the same packages, into test-output/pip-audit.json;
#   3. the gate (scripts/vulnerability_gate.py): a known vulnerability fails unless listed in
#      deploy/vulnerability-exceptions.toml with a reason and an unexpired date; a package that
#      could not be audited fails too.
# The packages are the image's own: its virtualenv's site-packages copied out of the image.
# Environment: IMAGE (default: scripts/build-image.sh's, built or reused), PIP_AUDIT_SERVICE
# (osv, the default, or pypi), SBOM_ONLY=1 (the SBOM alone: for a machine that reaches no
# vulnerability service, such as this project's CI; the audit is then not claimed), PYTHON (default .venv/bin/python, with cyclonedx-bom and
# pip-audit installed: pip install -e '.[test]').
set -euo pipefail
cd "$(dirname "$0")/.."

progress() { echo "==> $*" >&2; }
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
bin=$(dirname "$python")
image="${IMAGE:-$(./scripts/build-image.sh)}"
out=test-output
mkdir -p "$out"

work=$(mktemp -d)
container=""
cleanup() {
  [ -z "$container" ] || docker rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

progress "copying the Python environment out of $image"
container=$(docker create --network none "$image")
site=$(docker run --rm --network none --entrypoint python "$image" -c \
  'import sysconfig; print(sysconfig.get_paths()["purelib"])')
docker cp "$container:$site" "$work/site-packages" >/dev/null
# A virtualenv on the host around those packages, for tools that ask an interpreter what is
# installed (same Python minor version: the same distributions are found).
"$python" -m venv --without-pip "$work/venv"
target=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$target"
cp -a "$work/site-packages" "$target"

progress "SBOM (CycloneDX) of $(ls "$target" | grep -c '\.dist-info$') packages -> $out/sbom.cdx.json"
"$bin/cyclonedx-py" environment --output-format JSON --output-file "$out/sbom.cdx.json" \
  --pyproject pyproject.toml "$work/venv/bin/python"

if [ "${SBOM_ONLY:-}" = "1" ]; then
  progress "SBOM_ONLY=1: no vulnerability audit (no service reachable from this machine)"
  exit 0
fi

service="${PIP_AUDIT_SERVICE:-osv}"
progress "pip-audit ($service) -> $out/pip-audit.json"
# pip-audit exits 1 when it finds something: the gate below decides, with the exceptions.
"$bin/pip-audit" --path "$target" --vulnerability-service "$service" --format json \
  --progress-spinner off --output "$out/pip-audit.json" || true
[ -s "$out/pip-audit.json" ] || { echo "pip-audit produced no report" >&2; exit 1; }

progress "the gate: deploy/vulnerability-exceptions.toml"
"$python" scripts/vulnerability_gate.py "$out/pip-audit.json" deploy/vulnerability-exceptions.toml
