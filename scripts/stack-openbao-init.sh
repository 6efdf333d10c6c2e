#!/usr/bin/env bash
# Initialise, unseal and configure the stack's OpenBao (deploy/compose.openbao.yaml) for
# WakeDock; safe to run again (after a restart of OpenBao it only unseals).
#
#   stack-openbao-init.sh KEYS_DIR [SECRETS_DIR]
#
# KEYS_DIR (on the host, created 0700): `openbao-init.json`, the unseal keys and the root token
# of `bao operator init`, mode 0600. Nothing of it is kept in a container or a volume. Move the
# keys somewhere safe (one per keeper) and revoke the root token when the setup is done
# (`bao token revoke -self`): the script needs it again only to change the setup.
# SECRETS_DIR (default deploy/secrets, as scripts/stack-secrets.sh): where the AppRole secret id
# WakeDock logs in with is written, `openbao_secret_id`, owned by WakeDock's user, mode 0400.
#
# What it sets up: KV v2 at `secret/` (WakeDock's `secrets.vault_mount`), AppRole, the policy
# `wakedock` of deploy/openbao/wakedock-policy.hcl (read and write under `secret/services/` and
# `secret/wakedock/`, nothing else), and a role `wakedock` with that policy only, the role id
# OPENBAO_ROLE_ID. The commands run in the OpenBao container (`docker exec`); the root token and
# the keys go through stdin, never on a command line.
# Environment:
#   COMPOSE_PROJECT_NAME  the stack's Compose project (default deploy, Compose's default for
#                    deploy/compose.yaml; the `-p` of docker-compose)
#   OPENBAO_ROLE_ID  default wakedock (not a secret: the secret id is)
#   OPENBAO_KEY_SHARES, OPENBAO_KEY_THRESHOLD   default 5 and 3
#   WAKEDOCK_UID     default 10001
# Needs root (chown) and python3 (reads bao's JSON).
set -euo pipefail

keys_dir="${1:?usage: stack-openbao-init.sh KEYS_DIR [SECRETS_DIR]}"
secrets_dir="${2:-$(dirname "$0")/../deploy/secrets}"
policy="$(dirname "$0")/../deploy/openbao/wakedock-policy.hcl"
project="${COMPOSE_PROJECT_NAME:-deploy}"
role_id="${OPENBAO_ROLE_ID:-wakedock}"
shares="${OPENBAO_KEY_SHARES:-5}"
threshold="${OPENBAO_KEY_THRESHOLD:-3}"
wakedock_uid="${WAKEDOCK_UID:-10001}"
init_file="$keys_dir/openbao-init.json"

[ "$(id -u)" -eq 0 ] || { echo "run as root: the secret id is given to WakeDock's user" >&2; exit 1; }
umask 077
install -d -m 0700 "$keys_dir"

# The container by its Compose labels (`docker-compose ps` takes seconds).
container=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=openbao")
[ -n "$container" ] ||
  { echo "no running openbao container in the Compose project $project" >&2; exit 1; }
# bao ARGS...: the CLI in the OpenBao container, stdin passed on.
bao() { docker exec -i "$container" bao "$@"; }
# as_root SCRIPT ARGS...: a shell script in the container with the root token in BAO_TOKEN,
# given on the first line of stdin (the rest of stdin is the script's).
as_root() {
  local script="$1"
  shift
  { printf '%s\n' "$root_token"; cat; } |
    docker exec -i "$container" sh -c "read -r BAO_TOKEN; export BAO_TOKEN; $script" sh "$@"
}
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

# OpenBao answers `bao status` with 2 while sealed, 0 unsealed, 1 when it cannot be reached.
status=1
for _ in $(seq 60); do
  status=0
  bao status -format=json >/dev/null 2>&1 || status=$?
  [ "$status" -ne 1 ] && break
  sleep 1
done
[ "$status" -ne 1 ] || { echo "OpenBao does not answer (is the openbao service up?)" >&2; exit 1; }
state=$(bao status -format=json || true)

if [ "$(field "['initialized']" <<<"$state")" = False ]; then
  if [ -e "$init_file" ]; then
    echo "$init_file exists but OpenBao is not initialised: another server's keys? Move it away." >&2
    exit 1
  fi
  bao operator init -format=json -key-shares="$shares" -key-threshold="$threshold" </dev/null >"$init_file.new"
  mv "$init_file.new" "$init_file"
  chmod 0600 "$init_file"
  echo "initialised OpenBao: unseal keys and root token in $init_file (0600)" >&2
fi
[ -r "$init_file" ] || { echo "OpenBao is initialised but $init_file is missing" >&2; exit 1; }
root_token=$(field "['root_token']" <"$init_file")

if [ "$(field "['sealed']" <<<"$state")" = True ]; then
  python3 -c "import json, sys; print(*json.load(sys.stdin)['unseal_keys_b64'][:$threshold], sep='\n')" \
    <"$init_file" |
    docker exec -i "$container" sh -c \
      'while read -r key; do printf %s "$key" | bao write sys/unseal key=- >/dev/null; done'
  echo "unsealed OpenBao" >&2
fi

# The setup, idempotent (each step checks or overwrites), in one call; the policy on stdin.
as_root '
  bao secrets list | grep -q "^secret/ *kv " || bao secrets enable -path=secret -version=2 kv
  bao auth list | grep -q "^approle/ " || bao auth enable approle
  bao policy write wakedock -
  # Tokens of an hour, renewed by WakeDock up to a day, then a new login (docs/secrets.md).
  bao write auth/approle/role/wakedock token_policies=wakedock token_ttl=1h \
    token_max_ttl=24h secret_id_ttl=0
  bao write auth/approle/role/wakedock/role-id role_id="$1"' "$role_id" \
  <"$policy" >&2

secret_file="$secrets_dir/openbao_secret_id"
if [ -e "$secret_file" ]; then
  echo "kept $secret_file" >&2
else
  as_root 'bao write -format=json -f auth/approle/role/wakedock/secret-id' </dev/null |
    field "['data']['secret_id']" | tr -d '\n' >"$secret_file.new"
  mv "$secret_file.new" "$secret_file"
  echo "wrote $secret_file" >&2
fi
chown "$wakedock_uid:$wakedock_uid" "$secret_file"
chmod 0400 "$secret_file"

cat >&2 <<EOF
OpenBao is unsealed and set up for WakeDock (role id: $role_id).
- $init_file holds the $shares unseal keys and the root token: keep them apart, off this host,
  and revoke the root token once the setup is done. $threshold keys unseal OpenBao after each
  restart: run this script again (with the file back) or \`bao operator unseal\` $threshold times.
- Start WakeDock (or restart it if it gave up while OpenBao was sealed):
  docker-compose -p $project -f deploy/compose.yaml -f deploy/compose.openbao.yaml up -d
EOF
