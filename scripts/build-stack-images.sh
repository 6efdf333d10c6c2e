#!/usr/bin/env bash
# Build the local images of the production stack (deploy/compose.yaml) on a machine without an
# image registry: PostgreSQL, Redis, and the edge (WakeDock with nginx, ModSecurity and the
# OWASP CRS). In production PostgreSQL and Redis are the official digest-pinned images; the edge
# has no official equivalent, so this script builds it there too (docs/deploy.md, "The stack").
#
# One root filesystem serves every role, made by mmdebstrap (several times faster than
# debootstrap) from Debian bookworm: python3, python3-venv, ca-certificates, postgresql-15,
# redis-server, nginx, libnginx-mod-http-modsecurity, modsecurity-crs. It is `docker import`ed
# once; the three images are built from it with `docker build --network none` (nothing is
# downloaded inside a build; WakeDock's wheels are built on the host by scripts/build-image.sh).
# The users are those of the official images: postgres and redis run as 999:999.
#
# Idempotent: every tag carries a hash of its inputs, so images built from the same inputs are
# reused. Prints on stdout `base=<image>`, `postgres=<image>`, `redis=<image>`, `edge=<image>`;
# progress goes to stderr. Needs root (mmdebstrap) and Docker.
# Environment (all optional):
#   STACK_REPOSITORY  the images' repository (default wakedock-stack); tags: base-<hash>,
#                     postgres-<hash>, redis-<hash>, and <STACK_REPOSITORY>-edge:<version>-<hash>
#   DEBIAN_MIRROR     default: the first bookworm mirror in /etc/apt/sources.list*
#   WAKEDOCK_IMAGE    WakeDock's image (scripts/build-image.sh on its Debian base): when its
#                     Python is the base's, the edge copies its virtualenv instead of building
#                     the Dockerfile again on this base
#   PYTHON            the interpreter whose pip builds WakeDock's wheels (scripts/build-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

repository="${STACK_REPOSITORY:-wakedock-stack}"
PG_BIN="/usr/lib/postgresql/15/bin"

progress() { echo "==> $*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

# ---- the shared root filesystem ----
SUITE="bookworm"
PACKAGES="python3,python3-venv,ca-certificates,postgresql-15,redis-server,nginx"
PACKAGES="$PACKAGES,libnginx-mod-http-modsecurity,modsecurity-crs"
# Its tag: a hash of this section of the script (editing the rest rebuilds no root filesystem).
recipe=$(sed -n '/^# ---- the shared root filesystem ----$/,/^# ---- the edge/p' scripts/build-stack-images.sh)
base="$repository:base-$(echo "$recipe" | sha256sum | cut -c1-12)"
if exists "$base"; then
  progress "stack base $base is already there"
else
  source scripts/_debian_mirror.sh
  mirror=$(debian_mirror)
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
  [ "$(id -u)" -eq 0 ] || { echo "mmdebstrap needs root here" >&2; exit 1; }
  rootfs=$(mktemp /var/tmp/wakedock-stack.XXXXXX.tar)
  trap 'rm -f "$rootfs"' EXIT
  progress "mmdebstrap $SUITE (minbase + $PACKAGES) from $mirror"
  started=$SECONDS
  # Before the packages: the postgres user of the official image (999:999), and no default
  # cluster (postgresql-common would create one, with a snakeoil TLS key, in the image).
  # After: no snakeoil key, no host name or resolver of the build host, no logs. mmdebstrap
  # itself keeps daemons from starting and removes apt's lists and downloaded packages.
  mmdebstrap --mode=root --variant=minbase --include="$PACKAGES" \
    --aptopt='APT::Install-Recommends "false"' \
    --essential-hook='echo "postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh" >>"$1/etc/passwd"' \
    --essential-hook='echo "postgres:x:999:" >>"$1/etc/group"' \
    --essential-hook='echo "postgres:*:19000:0:99999:7:::" >>"$1/etc/shadow"' \
    --essential-hook='mkdir -p "$1/etc/postgresql-common" && echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.conf"' \
    --customize-hook='rm -rf "$1"/etc/ssl/private/ssl-cert-snakeoil.key "$1"/etc/ssl/certs/ssl-cert-snakeoil.pem "$1"/var/log/* "$1"/etc/resolv.conf "$1"/etc/hostname' \
    "$SUITE" "$rootfs" "$mirror" 2>&1 | sed -u 's/^/    /' >&2
  # A file first: a failed mmdebstrap must not leave a half image under the cached tag.
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/sh"]' \
    --message "mmdebstrap $SUITE minbase + $PACKAGES from $mirror" "$rootfs" "$base" >/dev/null
  rm -f "$rootfs"
  progress "stack base $base built in $((SECONDS - started)) s"
fi

context=$(mktemp -d)
trap 'rm -rf "$context" "${rootfs:-}"' EXIT

# ---- the edge: WakeDock's image (the Dockerfile) on this base ----
python_of() {
  docker run --rm --network none --entrypoint /usr/bin/python3 "$1" -c 'import sys; print(sys.version)'
}
if [ -n "${WAKEDOCK_IMAGE:-}" ] && [ "$(python_of "$WAKEDOCK_IMAGE")" = "$(python_of "$base")" ]; then
  # WakeDock's image was built on a Debian base with the same Python: its virtualenv (linked
  # to /usr/bin/python3) is copied onto this base as the Dockerfile's runtime stage does,
  # without building the wheels again (half a minute) or installing them (about a minute).
  edge="$repository-edge:$({
    sha256sum scripts/build-stack-images.sh
    docker image inspect --format '{{.Id}}' "$base" "$WAKEDOCK_IMAGE"
  } | sha256sum | cut -c1-12)"
  if ! exists "$edge"; then
    progress "docker build $edge (WakeDock from $WAKEDOCK_IMAGE, no network)"
    docker build --network none --tag "$edge" --file - "$context" >&2 <<EOF
FROM $WAKEDOCK_IMAGE AS wakedock
FROM $base
RUN groupadd --system --gid 10001 wakedock \\
 && useradd --system --no-log-init --uid 10001 --gid 10001 \\
      --home-dir /var/lib/wakedock --no-create-home --shell /usr/sbin/nologin wakedock \\
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/wakedock
COPY --from=wakedock /opt/wakedock /opt/wakedock
ENV PATH=/opt/wakedock/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 PYTHONUNBUFFERED=1 \\
    HOME=/var/lib/wakedock WAKEDOCK_DATA_DIR=/var/lib/wakedock
USER 10001:10001
WORKDIR /var/lib/wakedock
HEALTHCHECK CMD ["python", "-m", "wakedock.health", "--timeout", "5"]
ENTRYPOINT ["wakedock"]
CMD ["edge", "run"]
EOF
  fi
else
  edge=$(BASE_IMAGE="$base" IMAGE_REPOSITORY="$repository-edge" ./scripts/build-image.sh)
fi

# ---- PostgreSQL and Redis: the base, a user, a data directory ----
# What the official image's entrypoint does with the settings the stack uses: a first start
# initialises the cluster (superuser POSTGRES_USER, password from POSTGRES_PASSWORD_FILE,
# scram-sha-256) and creates POSTGRES_DB; then PostgreSQL runs with the given options.
cat >"$context/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -eu
if [ "${1:-}" = postgres ]; then
  shift
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$POSTGRES_PASSWORD_FILE" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    echo "CREATE DATABASE \"${POSTGRES_DB:-$user}\"" |
      postgres --single -D "$PGDATA" -c listen_addresses='' postgres >/dev/null
  fi
  exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
EOF
chmod 0755 "$context/docker-entrypoint.sh"
role_tag() { echo "$repository:$1-$({ sha256sum scripts/build-stack-images.sh; docker image inspect --format '{{.Id}}' "$base"; } | sha256sum | cut -c1-12)"; }

postgres=$(role_tag postgres)
if ! exists "$postgres"; then
  progress "docker build $postgres (no network)"
  docker build --network none --tag "$postgres" --file - "$context" >&2 <<EOF
FROM $base
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN install -d -o 999 -g 999 -m 0700 /var/lib/postgresql/data \\
 && install -d -o 999 -g 999 -m 3775 /run/postgresql
ENV PATH=$PG_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data
USER 999:999
STOPSIGNAL SIGINT
HEALTHCHECK CMD ["pg_isready", "--host=/run/postgresql"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
EOF
fi

redis=$(role_tag redis)
if ! exists "$redis"; then
  progress "docker build $redis (no network)"
  docker build --network none --tag "$redis" --file - "$context" >&2 <<EOF
FROM $base
RUN install -d -o 999 -g 999 -m 0700 /data
WORKDIR /data
USER 999:999
HEALTHCHECK CMD ["sh", "-c", "redis-cli -h 127.0.0.1 ping 2>&1 | grep -Eq 'PONG|NOAUTH'"]
CMD ["redis-server"]
EOF
fi

echo "base=$base"
echo "postgres=$postgres"
echo "redis=$redis"
echo "edge=$edge"
