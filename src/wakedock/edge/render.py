"""Render the edge's nginx + ModSecurity configuration from WakeDock's settings and services.

Rendering is pure (settings and services in, file texts out); writing is separate, so the
supervisor can tell whether anything changed before it asks nginx to reload. Every value that
lands in the nginx configuration is checked against a strict pattern first: a host name or a
path that could close a directive would otherwise let a service definition write nginx config.
"""

from __future__ import annotations

import grp
import hashlib
import ipaddress
import logging
import os
import pwd
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from wakedock.config import Settings
from wakedock.edge.exclusions import (
    CSP_REPORT_EXCLUSION,
    FILES_EXCLUSION,
    NEXT_EXCLUSION,
    PASSWORD_EXCLUSION,
    SECRET_EXCLUSIONS,
    SERVICE_FORM_EXCLUSION,
    SPEC_EXCLUSIONS,
    service_cookie_rules,
    token_field_rules,
)
from wakedock.edge.routes import DirectRoute
from wakedock.edge.tls import install_served, served_ca, served_pair
from wakedock.proxy.access import PLAIN_COOKIE, SECURE_COOKIE
from wakedock.proxy.edge_activity import ACTIVITY_TAG, EDGE_WORKER_USER, activity_socket
from wakedock.proxy.pages import EDGE_AUTH_PATH, PREFIX
from wakedock.services.snapshots import ServiceView
from wakedock.web.headers import protocol_answer_headers

# The seed's WAF (owasp/modsecurity-crs with PARANOIA=2, ANOMALY_INBOUND=5, ANOMALY_OUTBOUND=4).
PARANOIA_LEVEL = 2
INBOUND_ANOMALY_THRESHOLD = 5
OUTBOUND_ANOMALY_THRESHOLD = 4

# Where Debian's packages put them (nginx, libnginx-mod-http-modsecurity, modsecurity-crs).
NGINX_BINARY = Path("/usr/sbin/nginx")
MODSECURITY_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The admin API's largest body (the files API) is 1 MiB; WakeDock enforces each route's own.
ADMIN_MIN_BODY_BYTES = 1024 * 1024
# ModSecurity buffers a body to inspect it; its recommended limit without files is 128 KiB.
BODY_NO_FILES_LIMIT = 128 * 1024
# WakeDock answers the edge's access check from its session cache or one row: a check slower
# than this fails (500) rather than hold a visitor, and bounds how long an expired decision is
# still used by requests that arrive while it is asked again (docs/edge.md).
AUTH_CHECK_TIMEOUT_SECONDS = 5

log = logging.getLogger("wakedock.edge")

CONF_NAME = "nginx.conf"
SERVICE_COOKIE_RULES = "modsecurity/service-cookie.conf"
# Started as root, nginx's workers run as this user (nginx's own default).
_WORKER_USER = EDGE_WORKER_USER
_TMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi", "modsecurity", "auth_cache")
AUDIT_LOG_NAME = "modsec_audit.json"

_HOST = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_IP_LITERAL = r"\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\]"
_LISTEN = re.compile(rf"(?:{_IP_LITERAL}):\d{{1,5}}")
# WakeDock's own listener may also be a DNS name (its service name in a Compose stack):
# letters, digits and hyphens in dot-separated labels, nothing nginx would read as syntax.
_WAKEDOCK = re.compile(rf"(?:{_IP_LITERAL}|{_HOST.pattern}):\d{{1,5}}")
_PATH = re.compile(r"/[A-Za-z0-9._/+@-]*")
_HEADER_VALUE = re.compile(r"[ -~]*")
_COOKIE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class EdgeOptions:
    """Where the edge listens and what it is built from (the `wakedock edge` options)."""

    out_dir: Path
    cert: Path
    key: Path
    # The CA that vouches for WakeDock's own certificate (the certificate itself when generated).
    wakedock_ca: Path
    listen: str = "127.0.0.1:8444"
    # Bodies to a service host (WakeDock itself does not limit them; ModSecurity buffers them).
    service_max_body_bytes: int = 16 * 1024 * 1024
    # WakeDock serves plain HTTP (`serve --insecure-http`): for local testing only.
    wakedock_http: bool = False
    crs_rules: Path = CRS_RULES
    modsecurity_module: Path = MODSECURITY_MODULE

    @property
    def conf_path(self) -> Path:
        return self.out_dir / CONF_NAME

    @property
    def audit_log(self) -> Path:
        return self.out_dir / "logs" / AUDIT_LOG_NAME

    @property
    def temp_dir(self) -> Path:
        """nginx's and ModSecurity's buffers for large bodies. Started as root, the workers run
        as `nobody`, who may not traverse the data directory: then a directory of their own
        under the system's temporary directory, named after the output directory."""
        if os.geteuid() != 0:
            return self.out_dir / "tmp"
        digest = hashlib.sha256(str(self.out_dir.absolute()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"wakedock-edge-{digest}"


@dataclass(frozen=True)
class EdgeServer:
    """One nginx server block: the names it answers and whose headers rules it follows."""

    comment: str
    names: tuple[str, ...]
    max_body_bytes: int
    # "admin": security headers where WakeDock's answer has none; "own": only on nginx's own.
    header_scope: str
    default: bool = False
    # ModSecurity directives for this block only: the narrow exclusions (docs/edge.md).
    rules: tuple[str, ...] = ()
    # An awake service proxied by nginx itself (edge.direct_routes): its upstream block's name
    # and address; None sends every request to WakeDock.
    upstream: str | None = None
    route: DirectRoute | None = None
    # Not public: WakeDock's service host cookie is on its requests (its own ModSecurity rules).
    protected: bool = False
    # WakeDock's access check before every direct request (auth_request): protected services,
    # and public ones whose visitors the zero-trust network filter weighs.
    checked: bool = False


@dataclass(frozen=True)
class EdgeConfig:
    """The rendered files, by path relative to the output directory."""

    options: EdgeOptions
    files: dict[str, str] = field(default_factory=dict)
    servers: tuple[EdgeServer, ...] = ()


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r} cannot be written into the nginx configuration")
    return value


def _server_name(host: str) -> str:
    """A host as nginx's `$host` spells it: IPv6 literals in brackets."""
    host = host.lower().rstrip(".")
    if ":" in host:
        return _checked(_IPV6, f"[{host.strip('[]')}]", "host")
    return _checked(_HOST, host, "host")


def _path(path: Path) -> str:
    return _checked(_PATH, str(path.absolute()), "path")


def _wakedock_address(settings: Settings) -> str:
    """WakeDock's listener as seen from the edge: on the same machine (an address it listens
    on, loopback when it listens everywhere), or by a DNS name (another container's)."""
    host = settings.server.host.lower().rstrip(".")
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name
        unspecified = False
    if unspecified:  # listening everywhere: reach it on loopback
        host = "::1" if ":" in host else "127.0.0.1"
    address = f"[{host}]" if ":" in host else host
    return _checked(_WAKEDOCK, f"{address}:{settings.server.port}", "WakeDock address")


def edge_servers(
    settings: Settings,
    services: Iterable[ServiceView],
    options: EdgeOptions,
    routes: Mapping[str, DirectRoute] | None = None,
) -> tuple[EdgeServer, ...]:
    """The admin hosts, one block per service (`<name>.<base_domain>` and its own hosts), and a
    default block that hands any other host to WakeDock (which answers 404, or serves a service
    created since the last render). A service in `routes` (edge.direct_routes) is proxied to
    its upstream by nginx itself."""
    routes = routes if settings.edge.direct_routes_rendered and routes else {}
    taken: set[str] = set()

    def fresh(hosts: Iterable[str]) -> tuple[str, ...]:
        names = [n for n in dict.fromkeys(_server_name(h) for h in hosts) if n not in taken]
        taken.update(names)
        return tuple(names)

    admin_body = max(settings.http.max_body_bytes, ADMIN_MIN_BODY_BYTES)
    admin_names = fresh(settings.proxy.admin_hosts)
    # CRS 920350 scores a numeric Host as a scanner's; an operator who names an address as an
    # admin host means it. Only the admin block, and only when one of its names is an address.
    numeric = any(re.fullmatch(r"[\d.]+|\[[0-9a-f:.]+\]", n) for n in admin_names)
    admin_rules = (
        PASSWORD_EXCLUSION,
        NEXT_EXCLUSION,
        *SPEC_EXCLUSIONS,
        *FILES_EXCLUSION,
        *CSP_REPORT_EXCLUSION,
        *SERVICE_FORM_EXCLUSION,
        *SECRET_EXCLUSIONS,
        *(("SecRuleRemoveById 920350",) if numeric else ()),
    )
    servers = [
        EdgeServer("WakeDock's admin hosts", admin_names, admin_body, "admin", rules=admin_rules)
    ]
    for view in sorted(services, key=lambda v: v.name):
        try:
            comment = f"service {_checked(_HOST, view.name, 'service name')}"
            names = fresh([f"{view.name}.{settings.proxy.base_domain}", *view.spec.hosts])
        except ValueError as exc:
            # One odd row (an older spec) must not take the edge down: the default block still
            # hands its hosts to WakeDock, which applies its own checks.
            log.warning("service %r left to the default block: %s", view.name, exc)
            continue
        if not names:
            continue
        route = routes.get(view.name)
        if route is not None:
            _checked(_LISTEN, route.address, "upstream address")
        servers.append(
            EdgeServer(
                comment,
                names,
                options.service_max_body_bytes,
                "own",
                upstream=f"edge_service_{view.name}" if route is not None else None,
                route=route,
                protected=view.spec.access.policy != "public",
                checked=view.spec.access.policy != "public" or view.spec.access.network_filter,
            )
        )
    servers.append(
        EdgeServer("any other host: WakeDock answers", ("_",), admin_body, "admin", default=True)
    )
    return tuple(servers)


@dataclass(frozen=True)
class _Header:
    name: str
    variable: str
    value: str


def _headers() -> list[_Header]:
    """WakeDock's own security header set (web/headers.py), without its per-route Cache-Control."""
    found = []
    for raw_name, raw_value in protocol_answer_headers(hsts_max_age=None):
        name = raw_name.decode()
        if name == "cache-control":
            continue
        value = _checked(_HEADER_VALUE, raw_value.decode(), "header value")
        if any(c in value for c in '"\\$'):
            raise ValueError(f"header {name} cannot be quoted for nginx")
        found.append(
            _Header(
                "-".join(p.capitalize() for p in name.split("-")), name.replace("-", "_"), value
            )
        )
    return found


def render_edge(
    settings: Settings,
    services: Sequence[ServiceView],
    options: EdgeOptions,
    routes: Mapping[str, DirectRoute] | None = None,
) -> EdgeConfig:
    """Every file of the edge's configuration, as text (nothing is written). `routes`: the
    awake services nginx proxies directly (edge/routes.py), used when edge.direct_routes."""
    env = Environment(
        loader=PackageLoader("wakedock.edge", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        # nginx configuration, not HTML: no escaping (every value is checked above instead).
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
    )
    out = _path(options.out_dir)
    paths = {
        "prefix": out,
        "temp": _path(options.temp_dir),
        "conf_path": _path(options.conf_path),
        "modsecurity_conf": f"{out}/modsecurity/modsecurity.conf",
        "crs_setup": f"{out}/modsecurity/crs-setup.conf",
        "exclusions_before": f"{out}/modsecurity/exclusions-before-crs.conf",
        "service_cookie_rules": f"{out}/{SERVICE_COOKIE_RULES}",
        "audit_log": _path(options.audit_log),
        "crs_rules": _path(options.crs_rules),
        "modsecurity_module": _path(options.modsecurity_module),
    }
    server = settings.server
    servers = edge_servers(settings, services, options, routes)
    values = {
        **paths,
        "worker_user": _worker_user(),
        "rendered_for": f"{len(servers) - 2} service(s), "
        f"{sum(1 for s in servers if s.upstream)} proxied directly",
        "listen": _checked(_LISTEN, options.listen, "listen address"),
        # The last good copy of the configured pair (edge/tls.py), installed by write_edge.
        "cert": _path(served_pair(options.out_dir)[0]),
        "key": _path(served_pair(options.out_dir)[1]),
        "wakedock_ca": _path(served_ca(options.out_dir)),
        "wakedock_address": _wakedock_address(settings),
        "wakedock_scheme": "http" if options.wakedock_http else "https",
        "wakedock_tls_name": _server_name(server.tls_hostname),
        "header_timeout": _seconds(server.header_timeout_seconds),
        "body_timeout": _seconds(server.body_timeout_seconds),
        "keep_alive_timeout": server.keep_alive_timeout_seconds,
        "header_buffer": f"{max(8, server.max_header_bytes // 4 // 1024)}k",
        "upstream_timeout": _seconds(settings.proxy.upstream_timeout_seconds),
        "hsts": f"max-age={settings.http.hsts_max_age}; includeSubDomains",
        "headers": _headers(),
        "servers": servers,
        "paranoia_level": PARANOIA_LEVEL,
        "inbound_threshold": INBOUND_ANOMALY_THRESHOLD,
        "outbound_threshold": OUTBOUND_ANOMALY_THRESHOLD,
        "token_rules": token_field_rules(),
        "body_limit": max(options.service_max_body_bytes, ADMIN_MIN_BODY_BYTES),
        "body_no_files_limit": BODY_NO_FILES_LIMIT,
        # Direct routes (edge.direct_routes): WakeDock's paths on a service host, its access
        # check, the service host cookie nginx must not hand to the service, the activity log.
        "wakedock_prefix": _checked(_PATH, PREFIX, "path"),
        "auth_path": _checked(_PATH, EDGE_AUTH_PATH, "path"),
        "auth_cache": _path(options.temp_dir / "auth_cache"),
        "auth_cache_seconds": settings.edge.auth_cache_seconds,
        "auth_check_timeout": AUTH_CHECK_TIMEOUT_SECONDS,
        "proxy_cookie": _checked(_COOKIE, SECURE_COOKIE, "cookie name"),
        "plain_cookie": _checked(_COOKIE, PLAIN_COOKIE, "cookie name"),
        "activity_socket": _path(activity_socket(settings.data_dir)),
        "activity_tag": _checked(_COOKIE, ACTIVITY_TAG, "syslog tag"),
    }
    files = {
        CONF_NAME: env.get_template("nginx.conf.j2").render(values),
        "modsecurity/modsecurity.conf": env.get_template("modsecurity.conf.j2").render(values),
        "modsecurity/crs-setup.conf": env.get_template("crs-setup.conf.j2").render(values),
        "modsecurity/exclusions-before-crs.conf": env.get_template(
            "exclusions-before-crs.conf.j2"
        ).render(values),
        # Protected service hosts load it (their server block): WakeDock's cookie, as WakeDock
        # reads it behind the edge (its plain-HTTP name when WakeDock serves plain HTTP).
        SERVICE_COOKIE_RULES: service_cookie_rules(
            SECURE_COOKIE if not options.wakedock_http else PLAIN_COOKIE, options.crs_rules
        ),
    }
    return EdgeConfig(options, files, servers)


def _worker_user() -> str | None:
    """nginx's `user` line when started as root: the user and its own group (nogroup on
    Debian, which nginx would not guess)."""
    if os.geteuid() != 0:
        return None
    worker = pwd.getpwnam(_WORKER_USER)
    return f"{_WORKER_USER} {grp.getgrgid(worker.pw_gid).gr_name}"


def _seconds(value: float) -> int:
    """nginx takes whole seconds; never round a deadline down to zero."""
    return max(1, round(value))


def write_edge(config: EdgeConfig) -> bool:
    """Write the files (and the directories nginx needs under its prefix) and install the
    certificate and key nginx serves; True if any of them changed. Each file is replaced whole,
    so a reload never reads half a configuration. A pair that does not load keeps the last good
    one (a warning), or raises CertificateRefused when there is none."""
    out = config.options.out_dir
    for part in ("logs", "modsecurity"):
        (out / part).mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = config.options.temp_dir
    temp.mkdir(parents=True, exist_ok=True, mode=0o711)  # the workers traverse it, no more
    worker = pwd.getpwnam(_WORKER_USER) if os.geteuid() == 0 else None
    for name in _TMP_DIRS:
        directory = temp / name
        directory.mkdir(exist_ok=True, mode=0o700)
        if worker is not None:
            os.chown(directory, worker.pw_uid, worker.pw_gid)
    changed = False
    for name, text in config.files.items():
        target = out / name
        if target.exists() and target.read_text() == text:
            continue
        partial = target.with_name(target.name + ".new")
        partial.write_text(text)
        partial.replace(target)
        changed = True
    options = config.options
    changed |= install_served(options.cert, options.key, options.wakedock_ca, out)
    return changed
