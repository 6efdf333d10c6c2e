#!/usr/bin/env bash
# Install WakeDock into .venv and run it: https://127.0.0.1:8443, TLS 1.3, self-signed certificate,
# SQLite and secrets in ~/.wakedock (or --data-dir / WAKEDOCK_DATA_DIR). Extra arguments go to
# `wakedock serve` (e.g. --port 9443).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_prepare.sh
ensure_venv
echo "==> installing wakedock" >&2
.venv/bin/pip install -q --disable-pip-version-check .
exec .venv/bin/wakedock serve "$@"
