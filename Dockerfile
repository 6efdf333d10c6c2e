# WakeDock's container image (docs/deploy.md, "The image"). Build it with
# scripts/build-image.sh, which builds the wheels on the host first: nothing is downloaded here.
#
# BASE_IMAGE: a Debian-based Python 3.11 image. In production, a digest-pinned official one:
#   python:3.11-slim-bookworm@sha256:<digest>
# On a machine without a registry, the local Debian bookworm base from
# scripts/build-base-image.sh (debootstrap minbase + python3, python3-venv, ca-certificates).
ARG BASE_IMAGE

# ---- build: a virtualenv with WakeDock installed from the host's wheels ----
FROM ${BASE_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Two virtualenvs: one holding pip (from ensurepip), and WakeDock's own without pip, which that
# pip installs into (`--python`). The runtime stage copies only the second: no installer in it.
RUN python3 -m venv /opt/installer \
 && python3 -m venv --without-pip /opt/wakedock
COPY build/image/wheels/ /tmp/wheels/
# --no-index: only the wheels built on the host; --no-cache-dir: no pip cache in any layer.
# The bytecode is compiled here, once, with hashes of the sources (unchecked-hash: no timestamp,
# reproducible): the root filesystem is read-only at run time, and without it every start and
# every HEALTHCHECK would compile WakeDock again (22 s of CPU per healthcheck, measured).
RUN /opt/installer/bin/pip --python /opt/wakedock/bin/python install \
      --no-index --find-links /tmp/wheels --no-compile --no-cache-dir wakedock \
 && /opt/wakedock/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
      /opt/wakedock/lib

# ---- runtime: the base, a user, the virtualenv ----
FROM ${BASE_IMAGE}
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="WakeDock" \
      org.opencontainers.image.description="Wake Docker services on demand, stop them when idle." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"

# A dedicated user with a fixed uid/gid (10001: above any host's system and login ranges, so
# it owns nothing on the host by accident), no login shell, and the data directory it owns,
# the only place WakeDock writes (SQLite, generated keys and certificate, service files).
RUN groupadd --system --gid 10001 wakedock \
 && useradd --system --no-log-init --uid 10001 --gid 10001 \
      --home-dir /var/lib/wakedock --no-create-home --shell /usr/sbin/nologin wakedock \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/wakedock

COPY --from=build /opt/wakedock /opt/wakedock

ENV PATH=/opt/wakedock/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONNOUSERSITE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/wakedock \
    WAKEDOCK_DATA_DIR=/var/lib/wakedock \
    WAKEDOCK_SERVER__HOST=0.0.0.0 \
    WAKEDOCK_SERVER__PORT=8443

USER 10001:10001
WORKDIR /var/lib/wakedock
EXPOSE 8443
VOLUME ["/var/lib/wakedock"]
# WakeDock's own probe, `wakedock healthcheck` without loading the whole CLI (standard library
# HTTP only): GET /api/v1/health/live over TLS, pinned to the configured certificate.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "wakedock.health", "--timeout", "5"]
ENTRYPOINT ["wakedock"]
CMD ["serve"]
