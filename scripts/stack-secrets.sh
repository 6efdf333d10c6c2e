#!/usr/bin/env bash
# Write the secret files of the production stack (deploy/compose.yaml) into DIR (default
# deploy/secrets): random passwords and keys, and three self-signed TLS certificates, WakeDock's
# (names wakedock, localhost and WAKEDOCK_TLS_NAMES), PostgreSQL's (name postgres) and that of
# the optional OpenBao (deploy/compose.openbao.yaml; names openbao and 127.0.0.1, for its own
# CLI). OpenBao's AppRole secret id is written by scripts/stack-openbao-init.sh.
#
# docker-compose mounts these files as they are on the host (no uid/gid/mode of their own), so
# each belongs to the user of the container that reads it, readable by that user alone:
# WakeDock's and the edge's files to 10001, PostgreSQL's and Redis's to 999, OpenBao's to 100
# (the users of the official images). Existing files are kept (run it again after deleting one
# to replace it).
# Needs root (chown) and openssl. Keep DIR outside /etc, /usr and /lib: `wakedock cis-check`
# fails a container with a bind mount from a host system directory (CIS 5.6).
set -euo pipefail

dir="${1:-$(dirname "$0")/../deploy/secrets}"
WAKEDOCK_UID="${WAKEDOCK_UID:-10001}"
POSTGRES_UID="${POSTGRES_UID:-999}"
REDIS_UID="${REDIS_UID:-999}"
OPENBAO_UID="${OPENBAO_UID:-100}"

command -v openssl >/dev/null || { echo "openssl is not installed" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: the files are given to the containers' users" >&2; exit 1; }
umask 077
install -d -m 0755 "$dir"

# A random value safe in a URL: 32 bytes as 43 characters of base64url without padding.
random() { openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n'; }

# secret NAME UID [CONTENT]: write NAME (0400, owned by UID) unless it exists.
secret() {
  local path="$dir/$1"
  if [ -e "$path" ]; then
    echo "kept $path" >&2
  else
    printf '%s' "$3" >"$path"
    echo "wrote $path" >&2
  fi
  chown "$2:$2" "$path"
  chmod 0400 "$path"
}

# certificate NAME UID SUBJECT_ALT_NAMES: a self-signed EC certificate and its key.
certificate() {
  if [ ! -e "$dir/$1_tls_cert" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
      -subj "/CN=$1" -addext "subjectAltName=$3" \
      -keyout "$dir/$1_tls_key" -out "$dir/$1_tls_cert" 2>/dev/null
    echo "wrote $dir/$1_tls_cert and $dir/$1_tls_key" >&2
  fi
  chown "$2:$2" "$dir/$1_tls_cert" "$dir/$1_tls_key"
  chmod 0444 "$dir/$1_tls_cert"
  chmod 0600 "$dir/$1_tls_key"  # PostgreSQL refuses a key readable by anyone else
}

postgres_password=$(cat "$dir/postgres_password" 2>/dev/null || random)
secret postgres_password "$POSTGRES_UID" "$postgres_password"
# sslmode=require encrypts; verify-full also checks PostgreSQL's certificate (docs/deploy.md).
secret database_url "$WAKEDOCK_UID" \
  "postgresql://wakedock:$postgres_password@postgres:5432/wakedock?sslmode=require"

redis_password=$(sed -n 's/^user wakedock on >\([^ ]*\) .*/\1/p' "$dir/redis_acl" 2>/dev/null || true)
redis_password="${redis_password:-$(random)}"
# The default user off; WakeDock's user may run every command but the administrative ones.
secret redis_acl "$REDIS_UID" "user default off
user wakedock on >$redis_password ~* &* +@all -@admin
"
secret redis_url "$WAKEDOCK_UID" "redis://wakedock:$redis_password@redis:6379/0"

secret audit_chain_key "$WAKEDOCK_UID" "$(random)"
secret jwt_signing_key "$WAKEDOCK_UID" "$(random)"
secret mfa_encryption_key "$WAKEDOCK_UID" "$(random)"

names="DNS:wakedock,DNS:localhost,IP:127.0.0.1"
for name in ${WAKEDOCK_TLS_NAMES:-}; do names="$names,DNS:$name"; done
certificate wakedock "$WAKEDOCK_UID" "$names"
certificate postgres "$POSTGRES_UID" "DNS:postgres"
certificate openbao "$OPENBAO_UID" "DNS:openbao,IP:127.0.0.1"
