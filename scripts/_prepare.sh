# Shared by run.sh and test.sh: make sure Debian packages and a virtualenv are there.
# Usage: source scripts/_prepare.sh PACKAGE...   (packages installed only when missing)

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
}

ensure_dockerd() {
  # The Docker integration tests need a running engine; start one if we may.
  docker info >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "==> Docker engine not reachable: the Docker tests will skip (fail in CI)" >&2
    return 0
  fi
  if ! { command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; }; then
    echo "==> starting dockerd (log: /tmp/wakedock-dockerd.log)" >&2
    nohup dockerd --iptables=false >/tmp/wakedock-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "==> dockerd did not come up; see /tmp/wakedock-dockerd.log" >&2
}
