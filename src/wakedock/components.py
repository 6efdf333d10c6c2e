"""The objects a running WakeDock is made of, built once from Settings and passed around."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from wakedock.alerts.detect import DetectionSettings, Detector
from wakedock.alerts.geoip import GeoIP
from wakedock.alerts.ssrf import UnsafeWebhook, check_webhook
from wakedock.alerts.webhooks import AlertSink, Webhook
from wakedock.audit.chain import AuditChain
from wakedock.audit.events import Event, EventType
from wakedock.audit.service import CHAIN_INFO, record_event
from wakedock.auth.keys import Keyring, load_or_create_key_file
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.service import LOGIN_BY_IP, LOGIN_BY_USER, AuthService
from wakedock.auth.sessions import SessionStore
from wakedock.auth.setup import SetupToken
from wakedock.auth.tokens import TokenCodec
from wakedock.clock import Clock, SystemClock
from wakedock.config import FILE_SUFFIX, Settings, env_name, secret_origin
from wakedock.context import RequestContext
from wakedock.db import (
    make_engine,
    make_session_factory,
    migrate,
    on_write_committed,
    transaction,
)
from wakedock.files.store import FileStore
from wakedock.health.checks import (
    HealthChecks,
    database_check,
    engine_check,
    rate_limit_check,
    secrets_check,
    siem_check,
)
from wakedock.metrics.counters import AuditCounters
from wakedock.mfa.crypto import SecretBox
from wakedock.mfa.service import CHALLENGE_TYPE, MFA_BY_IP, MFA_BY_USER, MfaService
from wakedock.proxy.access import TICKET_SECONDS, ProxyAccess
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.directory import ServiceDirectory
from wakedock.proxy.wake import WAKE_BY_IP, WakeCoordinator
from wakedock.ratelimit.limiter import AttemptLimiter
from wakedock.runtime.base import ContainerRuntime
from wakedock.runtime.factory import make_runtime, policy_settings
from wakedock.secrets.base import SecretProvider
from wakedock.secrets.keysources import KEY_SETTING, key_source
from wakedock.secrets.resolve import Resolved, make_provider, referenced, resolve_settings
from wakedock.secrets.rotation import JwtKeys
from wakedock.secrets.services import ServiceSecrets
from wakedock.secrets.store import SecretStore
from wakedock.secrets.watch import MAX_BACKOFF, SecretWatcher
from wakedock.services.reconcile import Reconciler
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import WakeSnapshots
from wakedock.services.spec import parse_secret_ref
from wakedock.siem.exporter import SiemExporter, SinkWorker, sink_key
from wakedock.siem.sinks import parse_sink
from wakedock.users.service import PasswordRules, UserService
from wakedock.web.client_ip import IPNetwork, TrustedProxies, parse_networks
from wakedock.web.errors import Outages
from wakedock.web.provided import Provided


@dataclass
class Components:
    settings: Settings
    clock: Clock
    engine: Engine
    db: sessionmaker[Session]
    hasher: PasswordHasher
    keyring: Keyring
    codec: TokenCodec
    limiter: AttemptLimiter
    sessions: SessionStore
    auth: AuthService
    mfa: MfaService
    users: UserService
    setup: SetupToken
    trusted_proxies: tuple[IPNetwork, ...]
    files: FileStore
    runtime: ContainerRuntime
    services: ServiceManager
    reconciler: Reconciler
    activity: ActivityTracker
    wakes: WakeCoordinator
    directory: ServiceDirectory
    proxy_access: ProxyAccess
    audit_chain: AuditChain
    siem: SiemExporter
    metrics: AuditCounters
    jwt_keys: JwtKeys
    secret_watcher: SecretWatcher
    secret_store: SecretStore
    health: HealthChecks
    outages: Outages
    secret_provider: SecretProvider | None = None
    secret_sources: dict[str, str] = field(default_factory=dict)


def provided(components: Components) -> Provided:
    """What handlers may ask for, each under its own type (see web/provided.py)."""
    found = Provided()
    for name in Components.__dataclass_fields__:
        instance = getattr(components, name)
        if instance is not None and not isinstance(instance, tuple | dict):
            found.add(type(instance), instance)
    found.add(sessionmaker, components.db)
    found.add(Clock, components.clock)  # type: ignore[type-abstract]
    found.add(ContainerRuntime, components.runtime)  # type: ignore[type-abstract]
    found.add(TrustedProxies, TrustedProxies(components.trusted_proxies))
    found.add(WakeSnapshots, components.wakes)  # type: ignore[type-abstract]
    return found


def jwt_keys(
    configured: Settings,
    resolved: Resolved,
    provider: SecretProvider | None,
    factory: sessionmaker[Session],
    clock: Clock,
) -> JwtKeys:
    """The signing keys and their rotation (S9.3); see secrets/rotation.py."""
    settings = resolved.settings
    raw = configured.auth.jwt_signing_key
    reference = parse_secret_ref(raw.get_secret_value()) if raw is not None else None
    source = key_source(
        settings.auth.jwt_signing_key,
        reference,
        provider,
        resolved.sources.get(KEY_SETTING) or _origin("auth", "jwt_signing_key"),
        settings.data_dir,
        clock,
    )
    auth = settings.auth
    # The longest a token signed with a key can live: a proxy cookie lasts as long as a session.
    longest = max(
        auth.access_token_ttl_seconds,
        auth.session_absolute_seconds,
        settings.mfa.challenge_seconds,
        TICKET_SECONDS,
    )
    # Margins: a replica notices a new version within refresh_seconds, or later while its
    # backend is failing (backoff up to MAX_BACKOFF).
    refresh = settings.secrets.refresh_seconds
    every = auth.jwt_rotation_seconds
    return JwtKeys(
        source,
        clock,
        factory,
        lifetime=timedelta(seconds=longest + refresh + MAX_BACKOFF + 5),
        publish=timedelta(seconds=refresh + 5),
        rotate_every=timedelta(seconds=every) if every else None,
    )


def _origin(section: str, key: str) -> str:
    """Where a fixed secret setting came from, in words (never its value)."""
    variable = env_name(section, key)
    return {
        "file": f"the file named by {variable}{FILE_SUFFIX}",
        "env": f"the variable {variable}",
    }.get(secret_origin(section, key, {}, {}), "the configuration")


def _audit_secret_reads(
    factory: sessionmaker[Session], clock: Clock, sources: dict[str, str]
) -> None:
    """Each secret read at start-up is audited: the setting and its source, never the value."""
    context = RequestContext(actor="system:startup")
    with transaction(factory) as db:
        for setting, source in sorted(sources.items()):
            event = Event(EventType.SECRET_ACCESS, target=setting, details={"source": source})
            record_event(db, event, context, at=clock.now())


def audit_chain_key(settings: Settings) -> bytes:
    """The key of the audit hash chain: configured, or generated once (0600)."""
    configured = settings.audit.chain_key
    if configured is not None:
        return configured.get_secret_value().encode()
    return load_or_create_key_file(settings.data_dir / "secrets" / "audit_chain_key")


def siem_exporter(
    settings: Settings, configured: Settings, factory: sessionmaker[Session], clock: Clock
) -> SiemExporter:
    """One delivery worker per configured sink (started by the server, not here).

    A sink's cursor is keyed by the URL as configured: for a `secret:` reference, the reference
    (a rotated URL keeps its cursor, and no hash of a credential URL is stored)."""
    config = settings.siem
    workers = []
    for url, written in zip(config.sinks, configured.siem.sinks, strict=True):
        try:
            sink = parse_sink(url)
        except ValueError as exc:
            raise ValueError(f"siem.sinks: {exc}") from None
        workers.append(
            SinkWorker(
                sink_key(written),
                sink,
                factory,
                clock,
                batch_size=config.batch_size,
                poll_seconds=config.poll_seconds,
                max_backoff=config.max_backoff_seconds,
            )
        )
    if settings.alerts.webhooks:
        workers.append(
            SinkWorker(
                "alerts:" + sink_key("\n".join(configured.alerts.webhooks))[:56],
                alert_sink(settings),
                factory,
                clock,
                batch_size=config.batch_size,
                poll_seconds=config.poll_seconds,
                max_backoff=config.max_backoff_seconds,
                from_now=True,
            )
        )
    return SiemExporter(workers, factory)


def alert_sink(settings: Settings) -> AlertSink:
    """The alert pipeline; refuses to start with a webhook that fails the SSRF check."""
    config = settings.alerts
    allowed = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in config.allowed_networks)
    hooks = [Webhook.parse(url) for url in config.webhooks]
    for hook in hooks:
        try:
            check_webhook(hook.url, allowed)
        except UnsafeWebhook as exc:
            raise ValueError(f"alerts.webhooks: {exc}") from None
    detection = DetectionSettings(
        brute_force_failures=config.brute_force_failures,
        brute_force_accounts=config.brute_force_accounts,
        brute_force_window=timedelta(seconds=config.brute_force_window_seconds),
        policy_violations=config.policy_violations,
        policy_window=timedelta(seconds=config.policy_window_seconds),
    )
    country_of = GeoIP(config.geoip_database) if config.geoip_database else None
    return AlertSink(hooks, Detector(detection, country_of), allowed)


def secret_box(settings: Settings) -> SecretBox:
    """The box sealing TOTP secrets: configured key, or one generated once (0600)."""
    configured = settings.mfa.encryption_key
    if configured is not None:
        return SecretBox(configured.get_secret_value().encode())
    return SecretBox(load_or_create_key_file(settings.data_dir / "secrets" / "mfa_encryption_key"))


def build_components(
    settings: Settings,
    *,
    clock: Clock | None = None,
    hasher: PasswordHasher | None = None,
    run_migrations: bool = True,
    runtime: ContainerRuntime | None = None,
) -> Components:
    """Wire every component from settings. Creates the data directory and schema if needed."""
    clock = clock or SystemClock()
    configured = settings
    provider: SecretProvider | None = None
    resolved = Resolved(settings)
    # Every secret reference is resolved before anything uses the settings (S9); the provider
    # also serves the services' secret references.
    provider = make_provider(settings.secrets)
    if referenced(settings):
        resolved = resolve_settings(settings, provider)
        settings = resolved.settings
    secret_sources = resolved.sources
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url(), echo=settings.database.echo)
    chain_key = audit_chain_key(settings)
    if run_migrations:
        migrate(engine, chain_key)
    audit_chain = AuditChain(chain_key)
    factory = make_session_factory(engine, {CHAIN_INFO: audit_chain})
    outages = Outages()
    on_write_committed(factory, outages.up)
    auth = settings.auth
    hasher = hasher or PasswordHasher(
        auth.argon2_memory_kib, auth.argon2_time_cost, auth.argon2_parallelism
    )
    signing = jwt_keys(configured, resolved, provider, factory, clock)
    keyring = signing.keyring
    codec = TokenCodec(
        keyring,
        issuer=auth.jwt_issuer,
        audience=auth.jwt_audience,
        ttl_seconds=auth.access_token_ttl_seconds,
        clock=clock,
    )
    limiter = AttemptLimiter(
        settings.rate_limit.storage_url.get_secret_value(),
        {
            LOGIN_BY_USER: settings.rate_limit.login_per_username,
            LOGIN_BY_IP: settings.rate_limit.login_per_ip,
            MFA_BY_USER: settings.mfa.attempts_per_user,
            MFA_BY_IP: settings.mfa.attempts_per_ip,
            WAKE_BY_IP: settings.proxy.wake_per_ip,
        },
    )
    sessions = SessionStore(
        factory,
        clock,
        absolute_seconds=auth.session_absolute_seconds,
        idle_seconds=auth.session_idle_seconds,
        cache_seconds=auth.session_cache_seconds,
    )
    users = UserService(
        clock, hasher, PasswordRules(auth.password_min_length, auth.password_min_score), sessions
    )
    challenges = TokenCodec(
        keyring,
        issuer=auth.jwt_issuer,
        audience=f"{auth.jwt_audience}-mfa",
        ttl_seconds=settings.mfa.challenge_seconds,
        clock=clock,
        token_type=CHALLENGE_TYPE,
    )
    mfa = MfaService(
        factory, clock, secret_box(settings), hasher, limiter, sessions, challenges, settings.mfa
    )
    if secret_sources:
        _audit_secret_reads(factory, clock, secret_sources)
    runtime = runtime or make_runtime(settings.docker)
    secrets = ServiceSecrets(provider, settings.secrets.service_prefix, factory, clock)
    services = ServiceManager(factory, clock, runtime, policy_settings(settings.docker), secrets)
    activity = ActivityTracker(clock)
    proxy_access = ProxyAccess(keyring, auth, sessions, mfa, clock)
    wakes = WakeCoordinator(services, activity, proxy_access, limiter, clock, settings.proxy)
    siem = siem_exporter(settings, configured, factory, clock)
    checks = [
        database_check(engine),
        rate_limit_check(limiter),
        engine_check(runtime),
        secrets_check(provider),
    ]
    if siem.workers:
        checks.append(siem_check(siem))
    return Components(
        settings=settings,
        clock=clock,
        engine=engine,
        db=factory,
        hasher=hasher,
        keyring=keyring,
        codec=codec,
        limiter=limiter,
        sessions=sessions,
        auth=AuthService(factory, clock, hasher, limiter, sessions, codec, users, mfa),
        mfa=mfa,
        users=users,
        setup=SetupToken(clock, ttl_seconds=auth.setup_token_seconds),
        trusted_proxies=parse_networks(settings.http.trusted_proxies),
        files=FileStore(settings.data_dir / "files"),
        runtime=runtime,
        services=services,
        reconciler=Reconciler(factory, clock, runtime),
        activity=activity,
        wakes=wakes,
        directory=ServiceDirectory(services, settings.proxy.base_domain, clock),
        proxy_access=proxy_access,
        audit_chain=audit_chain,
        siem=siem,
        metrics=AuditCounters(factory),
        jwt_keys=signing,
        secret_store=SecretStore(provider, settings.secrets.service_prefix, factory, clock),
        secret_watcher=SecretWatcher(
            signing,
            provider,
            {k: v for k, v in resolved.references.items() if k != KEY_SETTING},
            resolved.versions,
            factory,
            clock,
            interval=settings.secrets.refresh_seconds,
        ),
        health=HealthChecks(checks),
        outages=outages,
        secret_provider=provider,
        secret_sources=secret_sources,
    )
