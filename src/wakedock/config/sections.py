"""The sections of WakeDock's settings (`server`, `auth`, `docker`, ...): one frozen model each."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from wakedock.config.checks import SECRET_REF_PREFIX, ip_networks, key_bytes, rate_limit


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # How often (seconds) the certificate files are checked for replacement.
    tls_reload_interval: float = Field(default=30.0, gt=0)
    # Hostname written into the generated self-signed certificate.
    tls_hostname: str = "localhost"
    # Days before the served certificate's notAfter when WakeDock warns (log, health report,
    # audit event and so alert); the smallest one is critical. /metrics always has the gauge.
    tls_expiry_warning_days: list[int] = Field(default_factory=lambda: [30, 14, 3], min_length=1)
    # A generated self-signed certificate is renewed once this few days are left (never a
    # configured one).
    tls_renew_days: int = Field(default=30, ge=1, le=300)
    # Slow clients (docs in README "Configuration"): the TLS handshake and the whole request head
    # must arrive within header_timeout_seconds; an idle keep-alive connection is closed after
    # keep_alive_timeout_seconds; a head larger than max_header_bytes is answered 431. While a
    # request is in progress, a client that sends none of its body, or reads none of the answer,
    # for body_timeout_seconds is cut off (nginx's client_body_timeout and send_timeout).
    header_timeout_seconds: float = Field(default=10.0, ge=1, le=300)
    body_timeout_seconds: float = Field(default=30.0, ge=1, le=3600)
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=300)
    max_header_bytes: int = Field(default=64 * 1024, ge=8 * 1024, le=1024 * 1024)
    # Open connections at once (TLS handshakes included). The effective cap is also kept below
    # the process's open-file limit minus reserved_file_descriptors (database, Docker, upstream
    # connections, files, and sockets accepted in a burst); the soft limit is raised to the hard
    # one at start.
    max_connections: int = Field(default=4096, ge=16, le=1_000_000)
    max_connections_per_client: int = Field(default=256, ge=1, le=100_000)
    reserved_file_descriptors: int = Field(default=512, ge=256, le=100_000)
    # The HTTP/1.1 parser: httptools (C, llhttp) is several times cheaper per request than h11
    # (pure Python); "auto" takes httptools when it is installed, h11 otherwise. Both are held
    # to the same limits (server/protocol.py).
    http_parser: Literal["auto", "httptools", "h11"] = "auto"
    # The event loop: "auto" takes uvloop when it is installed (not on Windows), asyncio's
    # otherwise. Both are held to the same limits.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # Worker processes serving the one listening socket (docs/proxy.md, "One worker or
    # several"): a number, or "auto" for one per CPU. Several need a shared rate-limit store.
    workers: int | Literal["auto"] = 1

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError("a number of worker processes from 1 to 256, or auto")
        return value

    def worker_count(self) -> int:
        """How many worker processes to run ("auto": one per CPU this process may use)."""
        if self.workers != "auto":
            return self.workers
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)

    @field_validator("tls_expiry_warning_days")
    @classmethod
    def _warning_days(cls, value: list[int]) -> list[int]:
        if any(days < 1 or days > 365 for days in value) or len(set(value)) != len(value):
            raise ValueError("each warning is a distinct number of days from 1 to 365")
        return sorted(value, reverse=True)

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.max_connections_per_client > self.max_connections:
            raise ValueError("max_connections_per_client cannot exceed max_connections")
        return self


class DatabaseSettings(_Section):
    # Empty means SQLite in the data directory.
    url: SecretStr | None = None
    echo: bool = False


class RateLimitSettings(_Section):
    # "memory://" (one process) or "redis://host:port/db" (shared by every replica).
    storage_url: SecretStr = SecretStr("memory://")
    login_per_username: str = "5/15 minutes"
    login_per_ip: str = "10/15 minutes"

    @field_validator("login_per_username", "login_per_ip")
    @classmethod
    def _parseable(cls, value: str) -> str:
        return rate_limit(value)

    @field_validator("storage_url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().split(":", 1)[0]
        if scheme not in {"memory", "redis", "rediss", "redis+unix"}:
            raise ValueError("must start with memory://, redis://, rediss:// or redis+unix://")
        return value


class AuthSettings(_Section):
    password_min_length: int = Field(default=12, ge=8, le=256)
    # argon2id cost; the floors are OWASP's minimum (19 MiB, 2 iterations). Changing them makes
    # WakeDock rehash each password at its next successful login.
    argon2_memory_kib: int = Field(default=65536, ge=19456, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(default=3, ge=2, le=20)
    # One lane (as OWASP's argon2id configurations): a login then occupies one core, not four.
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    # zxcvbn guessability score (0-4) a password must reach.
    password_min_score: int = Field(default=3, ge=0, le=4)
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    session_absolute_seconds: int = Field(default=8 * 3600, ge=60)
    session_idle_seconds: int = Field(default=30 * 60, ge=60)
    # How long a validated session may be served from memory before the database is asked
    # again. This bounds how late a revocation made by another replica is noticed.
    session_cache_seconds: float = Field(default=2.0, ge=0, le=10)
    registration_enabled: bool = False
    jwt_issuer: str = "wakedock"
    jwt_audience: str = "wakedock-api"
    # If unset, random keys are generated and kept in <data_dir>/secrets/jwt (mode 0600).
    jwt_signing_key: SecretStr | None = None
    # A new signing key is written this often (generated keys and Vault keys; 0: only by
    # `wakedock secrets rotate jwt`). Tokens signed with the previous key stay valid.
    jwt_rotation_seconds: int = Field(default=30 * 86400, ge=0)
    # Lifetime of the one-time first-admin setup token printed at first start.
    setup_token_seconds: int = Field(default=15 * 60, ge=60, le=3600)

    @field_validator("jwt_signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return key_bytes(value)


class MfaSettings(_Section):
    # Roles whose members must enrol MFA before doing anything else.
    required_roles: list[str] = Field(default_factory=lambda: ["admin"])
    # Seals TOTP secrets at rest. If unset, generated once in <data_dir>/secrets (mode 0600).
    encryption_key: SecretStr | None = None
    attempts_per_user: str = "5/5 minutes"
    attempts_per_ip: str = "10/5 minutes"
    challenge_seconds: int = Field(default=300, ge=30, le=900)
    # How recent an MFA proof must be for sensitive actions (step-up).
    step_up_seconds: int = Field(default=300, ge=30, le=3600)

    @field_validator("required_roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        from wakedock.rbac.permissions import Role

        if set(value) - {r.value for r in Role}:
            raise ValueError("unknown role: roles are admin, operator, developer, viewer")
        return value

    @field_validator("attempts_per_user", "attempts_per_ip")
    @classmethod
    def _parseable(cls, value: str) -> str:
        return rate_limit(value)

    @field_validator("encryption_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return key_bytes(value)


class HttpSettings(_Section):
    cors_origins: list[str] = Field(default_factory=list)
    # CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)
    docs_enabled: bool = False
    # Send HSTS even when WakeDock itself serves plain HTTP (TLS terminated by a trusted proxy).
    hsts_behind_proxy: bool = False
    hsts_max_age: int = Field(default=31536000, ge=0)
    # Request bodies on the admin host (the files API allows 1 MiB, login forms 16 KiB; proxied
    # bodies to service hosts are not limited). Larger bodies are answered 413.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: list[str]) -> list[str]:
        for index, origin in enumerate(value):
            if origin in {"*", "null"} or not origin.startswith(("https://", "http://")):
                raise ValueError(
                    f"item {index} is not an exact origin like https://admin.example.com"
                )
            if origin.endswith("/"):
                raise ValueError(f"item {index}: an origin has no trailing slash")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return ip_networks(value)


class AuditSettings(_Section):
    # >= 32 bytes; keys the hash chain. Default: generated once in data_dir/secrets (0600).
    chain_key: SecretStr | None = None

    @field_validator("chain_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return key_bytes(value)


class SiemSettings(_Section):
    """Where the audit trail is shipped (docs/audit.md): sink URLs, several at once."""

    sinks: list[str] = Field(default_factory=list)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    max_backoff_seconds: float = Field(default=60.0, ge=1, le=3600)

    @field_validator("sinks")
    @classmethod
    def _schemes(cls, value: list[str]) -> list[str]:
        known = ("file://", "syslog+udp://", "syslog+tcp://", "syslog+tls://", "http://",
                 "https://", "splunk+http://", "splunk+https://")  # fmt: skip
        for url in value:
            # A sink URL with credentials may be a secret:<path>#<key> reference itself.
            if not url.startswith((*known, SECRET_REF_PREFIX)):
                # The URL is not echoed: it may carry a token.
                raise ValueError(
                    "each sink is file://, syslog+udp|tcp|tls://, http(s):// or splunk+http(s)://"
                )
        if len(set(value)) != len(value):
            raise ValueError("a sink is listed twice")
        return value


class AlertSettings(_Section):
    """Alerts to webhooks (docs/audit.md): URLs are checked against SSRF at start-up and at
    every delivery; `slack+https://...` sends Slack-compatible JSON."""

    webhooks: list[str] = Field(default_factory=list)
    # Private/loopback networks a webhook may resolve to (e.g. an internal chat server).
    allowed_networks: list[str] = Field(default_factory=list)
    brute_force_failures: int = Field(default=10, ge=2)
    brute_force_accounts: int = Field(default=2, ge=1)
    brute_force_window_seconds: int = Field(default=300, ge=10)
    policy_violations: int = Field(default=3, ge=1)
    policy_window_seconds: int = Field(default=600, ge=10)
    # Alerts of one rule from one address within this window are grouped: the first at once,
    # one summary of the rest when it closes (docs/audit.md). 0 sends every alert.
    group_window_seconds: int = Field(default=300, ge=0)
    # A MaxMind GeoLite2-Country/City database: enables the "login from a new country" alert.
    geoip_database: Path | None = None

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return ip_networks(value)


class SecretsSettings(_Section):
    """Where `secret:<path>#<key>` references are read (docs/secrets.md)."""

    provider: Literal["env", "file", "vault"] = "file"
    # The file provider's directory (Docker and Kubernetes mount secrets there).
    directory: Path = Path("/run/secrets")
    vault_url: str | None = None
    vault_auth: Literal["token", "approle", "kubernetes"] = "token"
    vault_token: SecretStr | None = None
    vault_role_id: str | None = None
    vault_secret_id_file: Path | None = None
    vault_kubernetes_role: str | None = None
    vault_mount: str = "secret"
    vault_namespace: str | None = None
    # A CA bundle for the Vault server's certificate (verification is never switched off).
    vault_ca_file: Path | None = None
    # Where secrets are read while Vault is sealed or unreachable AT START-UP. Unset (the
    # default): WakeDock refuses to start, saying why. Set it only deliberately.
    vault_fallback: Literal["env", "file"] | None = None
    # How often referenced secrets and the signing keys are read again (a new KV version is
    # then used without a restart; health recovers from `degraded`).
    refresh_seconds: float = Field(default=60.0, ge=0.2, le=3600)
    # The folder under which services' `secret:` references and the secrets API live;
    # a developer may reference only `<prefix>/<service name>/...`.
    service_prefix: str = Field(default="services", pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _vault_complete(self) -> SecretsSettings:
        if self.provider != "vault":
            return self
        if not self.vault_url or not self.vault_url.startswith(("https://", "http://")):
            raise ValueError("vault_url is required with provider vault (https://...)")
        needs = {
            "token": ("vault_token", self.vault_token),
            "approle": ("vault_role_id", self.vault_role_id),
            "kubernetes": ("vault_kubernetes_role", self.vault_kubernetes_role),
        }[self.vault_auth]
        if needs[1] is None:
            raise ValueError(f"{needs[0]} is required with vault_auth {self.vault_auth}")
        if self.vault_auth == "approle" and self.vault_secret_id_file is None:
            raise ValueError("vault_secret_id_file is required with vault_auth approle")
        return self


# Docker's own rule for network names; the predefined networks are not user-defined ones.
DOCKER_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
PREDEFINED_NETWORKS = frozenset({"host", "none", "bridge", "default"})


class DockerSettings(_Section):
    """Where services run, and what the policy engine lets an admin relax (S6)."""

    runtime: Literal["engine", "swarm"] = "engine"
    url: str = "unix:///var/run/docker.sock"
    # The value of the `wakedock.managed` label: tells this installation's containers apart.
    installation: str = Field(default="wakedock", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    cap_allowlist: list[str] = Field(
        default_factory=lambda: ["CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE", "DAC_OVERRIDE"]
    )
    # Host directories under which services may bind-mount. Empty: no bind mounts at all.
    bind_mount_allowlist: list[str] = Field(default_factory=list)
    # Let specs publish host ports below 1024 (only root binds them; CIS 5.8 then reports FAIL).
    allow_privileged_host_ports: bool = False
    # Reconcile the database with the engine (and discover labelled containers) at start-up.
    reconcile_on_start: bool = True
    # Live discovery: follow the engine's event stream so labelled workloads appear, change and
    # go at once (services/watch.py); off, only start-up and `service reconcile` discover.
    live_discovery: bool = True
    # A burst of events is applied once it has been quiet this long (at most 5 s late).
    discovery_debounce_seconds: float = Field(default=0.5, ge=0.0, le=5.0)
    # WakeDock in a container (docs/services.md, "docker.network"): the user-defined network
    # WakeDock shares with its services. Every container it creates joins it instead of
    # publishing its port on the host's loopback (which is WakeDock's own inside a container),
    # and is reached by its container name there. Engine runtime only; checked at start-up.
    network: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("unix://", "tcp://", "ssh://", "npipe://")):
            raise ValueError("must be a Docker host URL such as unix:///var/run/docker.sock")
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not DOCKER_NETWORK_NAME.fullmatch(value):
            raise ValueError(
                "must be a Docker network name: letters, digits, '_', '.', '-' (1-128 "
                "characters, first a letter or digit)"
            )
        if value.lower() in PREDEFINED_NETWORKS:
            raise ValueError(
                f"{value} is not a user-defined network: host and none give WakeDock no "
                "network of its own to reach a service on, and Docker's default bridge "
                "(bridge, default) has no name resolution, so a container cannot be reached "
                "by its name; create one (docker network create NAME) and name it here"
            )
        return value

    @model_validator(mode="after")
    def _network_for_engine(self) -> DockerSettings:
        if self.network is not None and self.runtime != "engine":
            raise ValueError(
                "docker.network applies to the engine runtime; Swarm services join the overlay "
                "network their spec's network_mode names"
            )
        return self

    @field_validator("cap_allowlist")
    @classmethod
    def _caps(cls, value: list[str]) -> list[str]:
        normal = [cap.upper().removeprefix("CAP_") for cap in value]
        if "ALL" in normal or "SYS_ADMIN" in normal:
            raise ValueError("ALL and SYS_ADMIN can never be allowlisted")
        return normal

    @field_validator("bind_mount_allowlist")
    @classmethod
    def _binds(cls, value: list[str]) -> list[str]:
        for index, path in enumerate(value):
            if not path.startswith("/") or ".." in path.split("/") or path.rstrip("/") == "":
                raise ValueError(f"item {index}: entries must be absolute directories other than /")
        return value


class ProxySettings(_Section):
    """Wake on demand (S7): which host names reach which service, and the wake limits."""

    # Services answer on <name>.<base_domain> (and their own extra host names).
    base_domain: str = "localhost"
    # Host names the admin API and pages answer on; any other unknown host gets 404.
    admin_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    # Where browsers are sent to log in for a protected service; default
    # https://<first admin host>:<server.port>.
    admin_url: str | None = None
    wake_per_ip: str = "30/minute"
    # Services awake at once (woken on demand); a wake beyond it gets 503 until one sleeps.
    max_awake: int = Field(default=20, ge=1, le=10_000)
    reaper_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    # Readiness probing while waking: how often to ask.
    probe_interval_seconds: float = Field(default=0.02, gt=0, le=10)
    upstream_timeout_seconds: float = Field(default=300.0, gt=0)
    # Optional CPU rule: an idle service busier than this (percent of one CPU) is not stopped.
    idle_busy_cpu_percent: float | None = Field(default=None, gt=0)

    @field_validator("base_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.lower().rstrip(".")
        labels = value.split(".")
        if not value or not all(
            re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", x) for x in labels
        ):
            raise ValueError("not a DNS name such as example.com")
        return value

    @field_validator("admin_hosts")
    @classmethod
    def _admin_hosts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one host for the admin API")
        return [host.lower().rstrip(".").strip("[]") for host in value]

    @field_validator("admin_url")
    @classmethod
    def _admin_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/?#\s]+", value):
            raise ValueError("must be a scheme and host, e.g. https://wakedock.example.com")
        return value

    @field_validator("wake_per_ip")
    @classmethod
    def _limit(cls, value: str) -> str:
        return rate_limit(value)


class EdgeSettings(_Section):
    """The nginx edge in front of WakeDock (docs/edge.md): how it serves awake services."""

    # The edge proxies an awake service straight to its published port (WakeDock only for
    # sleeping services, WebSockets, event streams and sign-in). Read by both sides:
    # - "auto" (default): `edge run` renders the direct routes and registers itself in the
    #   database while it runs; `wakedock serve` listens for the edge's access log (the idle
    #   reaper's view of direct traffic) and waits stop_grace_seconds before stopping a
    #   container only while an edge is registered. `edge render` (no supervisor to reload
    #   nginx when a service stops) renders none.
    # - true: as auto, but `serve` always waits the grace and `edge render` renders them too.
    # - false: every request goes through WakeDock, as without the edge; no listener, no grace.
    direct_routes: bool | Literal["auto"] = "auto"
    # How long nginx keeps WakeDock's access decision for one (host, service cookie): a
    # revoked session still reaches a protected service directly for up to this long.
    auth_cache_seconds: int = Field(default=5, ge=0, le=300)
    # Between marking a service stopping (the edge drops its direct route) and stopping its
    # container, so no request is sent to a port the engine may hand to another container.
    stop_grace_seconds: float = Field(default=3.0, ge=0, le=60)

    @field_validator("direct_routes", mode="before")
    @classmethod
    def _direct_routes(cls, value: object) -> bool | str:
        # Before pydantic's own parsing, which would take "auto" for neither and say so twice.
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _DIRECT_ROUTES_WORDS:
            return _DIRECT_ROUTES_WORDS[word]
        raise ValueError("must be auto, true or false")

    @property
    def direct_routes_rendered(self) -> bool:
        """A supervised edge (`edge run`) renders direct routes: auto or true."""
        return self.direct_routes is not False


_DIRECT_ROUTES_WORDS: dict[str, bool | str] = {
    "auto": "auto",
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "1": True,
    "0": False,
}
