#!/usr/bin/env bash
# Install the test dependencies (Debian: Redis, PostgreSQL, oathtool, zbarimg, Docker, busybox,
# nginx with ModSecurity and the OWASP CRS (the edge), testssl.sh and sqlmap (attacking it),
# Chromium for the browser tests, debootstrap, mmdebstrap and docker-compose for the image and
# the production stack, Podman; Python: .venv with .[test]), start the Docker
# engine if it is not running (as root), and run the whole test suite. Extra arguments go to
# pytest (e.g. -m security).
# Integration tests start their own Redis and PostgreSQL on 127.0.0.1. They skip when a component
# is missing, unless WAKEDOCK_REQUIRE_INTEGRATION=1 (as in CI), which turns a skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_prepare.sh
apt_install redis-server postgresql oathtool zbar-tools docker.io busybox-static chromium \
  nginx libnginx-mod-http-modsecurity modsecurity-crs testssl.sh sqlmap debootstrap podman catatonit \
  docker-compose mmdebstrap
ensure_dockerd
ensure_venv
echo "==> installing wakedock with test dependencies" >&2
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Two workers (pytest-xdist): the Docker, Swarm, Podman and Chromium tests in order on one, the
# rest spread over both (tests/conftest.py). WAKEDOCK_TEST_WORKERS=0: all in this one process.
exec .venv/bin/pytest -n "${WAKEDOCK_TEST_WORKERS:-2}" "$@"
