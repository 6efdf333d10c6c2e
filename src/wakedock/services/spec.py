"""What a user may ask for when defining a service (S6.1).

`ServiceSpec` validates shape and syntax only. Whether a syntactically valid request is *allowed*
(privileged mode, host namespaces, bind mounts, ...) is the policy engine's call
(`wakedock.services.policy`), so one 422 can list every violation at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from wakedock.rbac.permissions import Role
from wakedock.services.loading_page import LoadingPage, check_template_folder

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A secret reference is resolved at launch; its narrow charset keeps it inert in logs and URLs.
SECRET_REF = re.compile(
    r"^secret:(?P<path>[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)#(?P<key>[A-Za-z0-9_.-]+)$"
)
VOLUME_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$")
CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
# Namespace/network modes: keywords, "container:<name>" or a user-defined network name.
MODE = re.compile(
    r"^(?:container:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"
)
# An HTTP path limited to RFC 3986 characters: no whitespace or control characters.
HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,1023}$")

# Docker's reference grammar (distribution/reference), with two tightenings: the registry host may
# only be recognised by a dot, a port or "localhost", and path components are lowercase only.
_HOST_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REGISTRY = (
    rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})+(?::[0-9]{{1,5}})?"
    rf"|{_HOST_COMPONENT}:[0-9]{{1,5}}"
    r"|localhost)"
)
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_REGISTRY}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
MAX_IMAGE_LENGTH = 512
# Signals a container may be asked to stop with (Linux names, whatever the WakeDock host is):
# the usual graceful ones, those images declare as STOPSIGNAL (nginx and php-fpm SIGQUIT, httpd
# SIGWINCH, systemd SIGRTMIN+3, LXC-style inits SIGPWR), and SIGKILL for apps with nothing to
# flush. Job-control signals are left out: a stopped or continued process never ends.
STOP_SIGNALS = frozenset(
    {
        "SIGTERM",
        "SIGINT",
        "SIGQUIT",
        "SIGHUP",
        "SIGUSR1",
        "SIGUSR2",
        "SIGWINCH",
        "SIGPWR",
        "SIGRTMIN+3",
        "SIGKILL",
    }
)


def _check_dns_label(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError("must be a DNS label: lowercase letters, digits and '-', 1-63 characters")
    return value


def _check_container_path(value: str) -> str:
    """An absolute, already-normal path inside the container."""
    if "\x00" in value or not value.startswith("/") or len(value) > 4096:
        raise ValueError("must be an absolute path")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..' segments")
    return value


def _no_duplicates(values: list[Any], what: str) -> None:
    # Messages name the position, never the value: a 422 does not repeat what was sent.
    seen: set[Any] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ValueError(f"item {index} repeats an earlier {what}")
        seen.add(value)


def parse_secret_ref(value: str) -> tuple[str, str] | None:
    """Return (path, key) when `value` is a secret reference, None when it is a plain value."""
    match = SECRET_REF.fullmatch(value)
    if match is None:
        return None
    return match["path"], match["key"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortMapping(_Strict):
    container_port: int = Field(ge=1, le=65535)
    # None lets the engine choose a free host port (still bound to 127.0.0.1).
    host_port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"


class NamedVolume(_Strict):
    name: str
    target: str
    read_only: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VOLUME_NAME.fullmatch(value):
            raise ValueError("must be lowercase letters, digits, '_', '.', '-' (1-64 characters)")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return _check_container_path(value)


class BindMount(_Strict):
    # Only syntax here: the policy engine judges the host path (allowlist, '..', sensitive paths).
    source: str
    target: str
    read_only: bool = True

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if "\x00" in value or not value.startswith("/") or len(value) > 4096:
            raise ValueError("must be an absolute host path")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return _check_container_path(value)


def _volume_kind(value: Any) -> str:
    # A bind mount is recognised by its host `source`; anything else is judged as a named volume.
    if isinstance(value, BindMount) or (isinstance(value, dict) and "source" in value):
        return "bind"
    return "volume"


Volume = Annotated[
    Annotated[NamedVolume, Tag("volume")] | Annotated[BindMount, Tag("bind")],
    Discriminator(_volume_kind),
]


class Limits(_Strict):
    memory_mb: int = Field(default=256, ge=16, le=65536)
    cpus: float = Field(default=0.5, ge=0.05, le=64)
    pids: int = Field(default=256, ge=16, le=32768)


class _ProbeTiming(_Strict):
    interval_s: int = Field(default=10, ge=1, le=3600)
    timeout_s: int = Field(default=5, ge=1, le=600)
    retries: int = Field(default=3, ge=1, le=20)


class HealthcheckProbe(_ProbeTiming):
    type: Literal["healthcheck"]
    test: list[str] = Field(min_length=2, max_length=64)

    @field_validator("test")
    @classmethod
    def _test(cls, value: list[str]) -> list[str]:
        # "NONE" would disable the healthcheck, which CIS 5.26 requires to be present.
        if value[0] not in ("CMD", "CMD-SHELL"):
            raise ValueError("must start with 'CMD' or 'CMD-SHELL'")
        for item in value:
            if "\x00" in item or len(item) > 1024:
                raise ValueError("items must be at most 1024 characters, without NUL")
        return value


class HttpProbe(_ProbeTiming):
    type: Literal["http"]
    path: str = "/"
    port: int = Field(ge=1, le=65535)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not HTTP_PATH.fullmatch(value):
            raise ValueError("must start with '/' and contain only URL characters (no spaces)")
        return value


class TcpProbe(_ProbeTiming):
    type: Literal["tcp"]
    port: int = Field(ge=1, le=65535)


Readiness = Annotated[HealthcheckProbe | HttpProbe | TcpProbe, Field(discriminator="type")]


class Access(_Strict):
    policy: Literal["public", "authenticated", "roles"] = "authenticated"
    roles: list[Role] = Field(default_factory=list, validate_default=True)
    # A public service's visitors weighed by the zero-trust network signals (deny lists,
    # countries, AS numbers, anonymisers; docs/zerotrust.md, "On service hosts"). A protected
    # service's visitors are always weighed, by every signal.
    network_filter: bool = False

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[Role], info: ValidationInfo) -> list[Role]:
        policy = info.data.get("policy")
        if policy == "roles" and not value:
            raise ValueError("must name at least one role when policy is 'roles'")
        if policy != "roles" and value:
            raise ValueError("only allowed when policy is 'roles'")
        _no_duplicates(value, "role")
        return value

    @field_validator("network_filter")
    @classmethod
    def _filter(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("policy") != "public":
            raise ValueError(
                "only for policy 'public': a protected service's visitors are always weighed"
            )
        return value


class ServiceSpec(_Strict):
    """A service as a user asked for it. Validates syntax; `policy.violations` judges safety."""

    name: str
    display_name: str | None = Field(default=None, min_length=1, max_length=64)
    image: str = Field(max_length=MAX_IMAGE_LENGTH)
    command: list[str] | None = Field(default=None, max_length=256)
    env: dict[str, str] = Field(default_factory=dict, max_length=512)
    ports: list[PortMapping] = Field(default_factory=list, max_length=64)
    volumes: list[Volume] = Field(default_factory=list, max_length=64)
    limits: Limits = Field(default_factory=Limits)
    readiness: Readiness
    wake_timeout_s: int = Field(default=60, ge=1, le=600)
    idle_timeout_s: int = Field(default=900, ge=2, le=86400)
    stop_method: Literal["stop", "pause"] = "stop"
    # How a stop asks the app to end: the signal (None: the image's STOPSIGNAL, else SIGTERM),
    # then SIGKILL after the timeout. Docker's default is 10 s; 300 s bounds a stop request.
    stop_signal: str | None = None
    stop_timeout_s: int = Field(default=10, ge=1, le=300)
    hosts: list[str] = Field(default_factory=list, max_length=32)
    access: Access = Field(default_factory=Access)
    depends_on: list[str] = Field(default_factory=list, max_length=32)
    # What a browser sees while the service wakes (services/loading_page.py).
    loading_page: LoadingPage = Field(default_factory=LoadingPage)

    # Knobs a user may ask for so that the policy engine can refuse them by name.
    privileged: bool = False
    cap_add: list[str] = Field(default_factory=list, max_length=64)
    network_mode: str | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None
    uts_mode: str | None = None
    devices: list[str] = Field(default_factory=list, max_length=64)
    read_only_root: bool = True
    # Paths inside the container (not this host's /tmp).
    tmpfs: list[str] = Field(default_factory=lambda: ["/tmp"], max_length=16)  # noqa: S108  # nosec B108

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_dns_label(value)

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must not contain control characters")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not IMAGE_REFERENCE.fullmatch(value):
            raise ValueError(
                "must be an image reference [registry[:port]/]path[:tag][@sha256:<64 hex>] "
                "with a lowercase path"
            )
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if "\x00" in item or len(item) > 1024:
                raise ValueError("items must be at most 1024 characters, without NUL")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for index, (key, item) in enumerate(value.items()):
            # A valid name may locate an error (like a field name); an invalid one is not echoed.
            if not ENV_KEY.fullmatch(key) or len(key) > 256:
                raise ValueError(
                    f"variable {index}: names are letters, digits and '_' (not first a digit)"
                )
            if "\x00" in item or len(item) > 32768:
                raise ValueError(f"{key}: value must be at most 32768 characters, without NUL")
            # A value that looks like a reference but is malformed is almost surely a typo; refusing
            # it beats silently injecting the literal text "secret:..." into the container.
            if not item.startswith("secret:"):
                continue
            ref = parse_secret_ref(item)
            if ref is None:
                raise ValueError(f"{key}: secret reference must be 'secret:<path>#<key>'")
            if {".", ".."} & {*ref[0].split("/"), ref[1]}:
                raise ValueError(f"{key}: secret path and key must not be '.' or '..'")
        return value

    @field_validator("stop_signal")
    @classmethod
    def _stop_signal(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Docker accepts "TERM", "sigterm" and "SIGTERM" alike; one spelling is stored.
        name = value.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name not in STOP_SIGNALS:
            raise ValueError(f"must be one of {', '.join(sorted(STOP_SIGNALS))}")
        return name

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[PortMapping]) -> list[PortMapping]:
        _no_duplicates([(p.container_port, p.protocol) for p in value], "container port")
        bound = [(p.host_port, p.protocol) for p in value if p.host_port is not None]
        _no_duplicates(bound, "host port")
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[NamedVolume | BindMount]) -> list[NamedVolume | BindMount]:
        _no_duplicates([v.target for v in value], "volume target")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for index, host in enumerate(value):
            if len(host) > 253 or not all(DNS_LABEL.fullmatch(part) for part in host.split(".")):
                raise ValueError(f"item {index} is not a lowercase DNS name")
        _no_duplicates(value, "host")
        return value

    @field_validator("depends_on")
    @classmethod
    def _depends_on(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for dependency in value:
            _check_dns_label(dependency)
        if info.data.get("name") in value:
            raise ValueError("a service cannot depend on itself")
        _no_duplicates(value, "dependency")
        return value

    @field_validator("loading_page")
    @classmethod
    def _loading_page(cls, value: LoadingPage, info: ValidationInfo) -> LoadingPage:
        if "name" in info.data:
            check_template_folder(value, info.data["name"])
        return value

    @field_validator("cap_add")
    @classmethod
    def _cap_add(cls, value: list[str]) -> list[str]:
        # Docker accepts "net_admin" and "CAP_NET_ADMIN" alike; one spelling keeps the policy exact.
        normal = [item.upper().removeprefix("CAP_") for item in value]
        for index, item in enumerate(normal):
            if not CAPABILITY.fullmatch(item):
                raise ValueError(f"item {index} is not a capability name such as NET_ADMIN")
        _no_duplicates(normal, "capability")
        return normal

    @field_validator("network_mode", "pid_mode", "ipc_mode", "uts_mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value is not None and not MODE.fullmatch(value):
            raise ValueError("must be a mode keyword, 'container:<name>' or a network name")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        for item in value:
            if "\x00" in item or len(item) > 4096 or not item:
                raise ValueError("device entries must be 1-4096 characters, without NUL")
        return value

    @field_validator("tmpfs")
    @classmethod
    def _tmpfs(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_container_path(item)
            if item == "/":
                raise ValueError("tmpfs cannot replace the root filesystem")
        _no_duplicates(value, "tmpfs path")
        return value
