"""The objects a running WakeDock is made of, built once from Settings and passed around."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from wakedock.alerts.webhooks import alerts_cursor_key, make_alert_sink
from wakedock.audit.chain import AuditChain, audit_chain_key, chains_for
from wakedock.audit.checks import ChainChecks
from wakedock.audit.service import CHAIN_INFO, Auditor
from wakedock.auth.csrf import CsrfGuard
from wakedock.auth.dependencies import Authenticator
from wakedock.auth.keys import Keyring
from wakedock.auth.passwords import PasswordHasher
from wakedock.auth.sessions import SessionStore
from wakedock.auth.setup_token import SetupToken
from wakedock.auth.tokens import TokenCodec
from wakedock.auth.zerotrust import RequestWeigher, zero_trust_gate
from wakedock.clock import Clock, SystemClock
from wakedock.cluster.counters import RequestCounts
from wakedock.cluster.edges import EdgeRegistry
from wakedock.cluster.epoch import shared_epoch
from wakedock.config import Settings
from wakedock.console.container_checks import ContainerChecks
from wakedock.dashboard.board import ServicesBoard
from wakedock.dashboard.csp import CspReports, csp_budgets
from wakedock.dashboard.detail import ServiceDetails
from wakedock.dashboard.usage import UsageSamples
from wakedock.db import (
    make_engine,
    make_session_factory,
    migrate,
    on_write_committed,
)
from wakedock.files.store import FileStore
from wakedock.health.certificate import CertificateWatch
from wakedock.health.checks import (
    HealthChecks,
    database_check,
    engine_check,
    rate_limit_check,
    secrets_check,
    siem_check,
)
from wakedock.login.challenges import CHALLENGE_TYPE, ChallengeBook
from wakedock.login.password import PasswordChanger
from wakedock.login.service import LoginFlow, login_budgets
from wakedock.metrics.counters import AuditCounters
from wakedock.metrics.service import Metrics
from wakedock.mfa.crypto import make_secret_box
from wakedock.mfa.service import MfaService, mfa_budgets
from wakedock.proxy.access import TICKET_SECONDS, ProxyAccess
from wakedock.proxy.activity import ActivityTracker
from wakedock.proxy.directory import ServiceDirectory
from wakedock.proxy.themes import LoadingPages
from wakedock.proxy.trust import ServiceTrust
from wakedock.proxy.wake import WakeCoordinator, wake_budgets
from wakedock.ratelimit.limiter import AttemptLimiter
from wakedock.rbac.dependencies import GuardContext
from wakedock.runtime.base import ContainerRuntime
from wakedock.runtime.factory import make_runtime
from wakedock.secrets.base import SecretProvider
from wakedock.secrets.references import ServiceSecrets
from wakedock.secrets.rotation import JwtKeys
from wakedock.secrets.service import SecretStore
from wakedock.secrets.startup import (
    audit_secret_reads,
    make_jwt_keys,
    make_secret_watcher,
    read_secrets,
)
from wakedock.secrets.watch import SecretWatcher
from wakedock.services.grace import stop_grace
from wakedock.services.launch import policy_settings
from wakedock.services.reconcile import Reconciler
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import WakeSnapshots
from wakedock.services.wake_history import WakeHistory
from wakedock.services.watch import DiscoveryWatcher, make_discovery_watcher
from wakedock.settings.service import EffectiveSettings
from wakedock.siem.exporter import SiemExporter, make_exporter
from wakedock.users.service import PasswordRules, UserService
from wakedock.users.sessions import SessionAdmin
from wakedock.users.signup import Signup
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
    auditor: Auditor
    csrf: CsrfGuard
    authenticator: Authenticator
    guard: GuardContext
    login: LoginFlow
    password_changer: PasswordChanger
    mfa: MfaService
    users: UserService
    signup: Signup
    session_admin: SessionAdmin
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
    chain_checks: ChainChecks
    siem: SiemExporter
    metrics: Metrics
    request_counts: RequestCounts
    effective_settings: EffectiveSettings
    jwt_keys: JwtKeys
    secret_watcher: SecretWatcher
    secret_store: SecretStore
    health: HealthChecks
    outages: Outages
    certificate: CertificateWatch
    board: ServicesBoard
    csp_reports: CspReports
    details: ServiceDetails
    loading_pages: LoadingPages
    # The posture page's CIS results of every container, read briefly cached.
    container_checks: ContainerChecks
    secret_provider: SecretProvider | None = None
    secret_sources: dict[str, str] = field(default_factory=dict)
    # Live discovery (docker.live_discovery): None when turned off.
    discovery: DiscoveryWatcher | None = None


def provided(components: Components) -> Provided:
    """What handlers may ask for, each under its own type (see web/provided.py)."""
    found = Provided()
    for name in Components.__dataclass_fields__:
        instance = getattr(components, name)
        if instance is not None and not isinstance(instance, tuple | dict):
            found.add(type(instance), instance)
    found.add(sessionmaker, components.db)
    # Under its declared type: the loaded settings are a subclass (config/loading.py).
    found.add(Settings, components.settings)
    found.add(Clock, components.clock)  # type: ignore[type-abstract]
    found.add(ContainerRuntime, components.runtime)  # type: ignore[type-abstract]
    found.add(TrustedProxies, TrustedProxies(components.trusted_proxies))
    found.add(WakeSnapshots, components.wakes)  # type: ignore[type-abstract]
    if components.secret_provider is not None:
        found.add(SecretProvider, components.secret_provider)  # type: ignore[type-abstract]
    return found


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
    # Every secret reference is resolved before anything uses the settings (S9).
    provider, resolved = read_secrets(settings)
    settings = resolved.settings
    secret_sources = resolved.sources
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url(), echo=settings.database.echo)
    chain_key = audit_chain_key(settings.audit.chain_key, settings.data_dir)
    if run_migrations:
        migrate(engine, chain_key)
    audit_chain = AuditChain(chain_key, chains_for(engine.dialect.name))
    factory = make_session_factory(engine, {CHAIN_INFO: audit_chain})
    outages = Outages()
    on_write_committed(factory, outages.up)
    auth = settings.auth
    hasher = hasher or PasswordHasher(
        auth.argon2_memory_kib, auth.argon2_time_cost, auth.argon2_parallelism
    )
    # The longest a token signed with a key can live: a proxy cookie lasts as long as a session.
    longest_token = max(
        auth.access_token_ttl_seconds,
        auth.session_absolute_seconds,
        settings.mfa.challenge_seconds,
        TICKET_SECONDS,
    )
    signing = make_jwt_keys(
        configured, resolved, provider, factory, clock, longest_token_seconds=longest_token
    )
    keyring = signing.keyring
    codec = TokenCodec(
        keyring,
        issuer=auth.jwt_issuer,
        audience=auth.jwt_audience,
        ttl_seconds=auth.access_token_ttl_seconds,
        clock=clock,
    )
    # Each feature names its own attempt budgets.
    limiter = AttemptLimiter(
        settings.rate_limit.storage_url.get_secret_value(),
        {
            **login_budgets(settings.rate_limit),
            **mfa_budgets(settings.mfa),
            **wake_budgets(settings.proxy),
            **csp_budgets(),
        },
    )
    sessions = SessionStore(
        factory,
        clock,
        absolute_seconds=auth.session_absolute_seconds,
        idle_seconds=auth.session_idle_seconds,
        cache_seconds=auth.session_cache_seconds,
        epoch=shared_epoch("sessions"),
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
    box = make_secret_box(settings.mfa.encryption_key, settings.data_dir)
    auditor = Auditor(factory, clock)
    mfa = MfaService(factory, clock, box, hasher, limiter, sessions, auditor, settings.mfa)
    gate = zero_trust_gate(settings.zerotrust, factory, auditor, clock)
    request_weigher = RequestWeigher(
        gate,
        sessions,
        factory,
        clock,
        cache_seconds=settings.zerotrust.request_cache_seconds,
        country_change=settings.zerotrust.session_country_change,
    )
    login = LoginFlow(
        factory,
        clock,
        hasher,
        limiter,
        sessions,
        codec,
        mfa,
        ChallengeBook(factory, clock, challenges, seconds=settings.mfa.challenge_seconds),
        auditor,
        gate,
    )
    setup = SetupToken(clock, ttl_seconds=auth.setup_token_seconds)
    if secret_sources:
        audit_secret_reads(factory, clock, secret_sources)
    runtime = runtime or make_runtime(settings.docker)
    secrets = ServiceSecrets(provider, settings.secrets.service_prefix, factory, clock)
    files = FileStore(settings.data_dir / "files")
    edges = EdgeRegistry(factory, clock)
    services = ServiceManager(
        factory,
        clock,
        runtime,
        policy_settings(settings.docker),
        secrets,
        # The edge's direct routes must be gone before a container's port can be reused.
        stop_grace=stop_grace(settings.edge, edges.any_attached),
        templates=files,
    )
    activity = ActivityTracker(clock)
    request_counts = RequestCounts()
    proxy_access = ProxyAccess(keyring, auth, sessions, mfa, clock, factory)
    wake_history = WakeHistory(factory)
    service_trust = ServiceTrust(
        request_weigher, gate, cache_seconds=settings.zerotrust.request_cache_seconds
    )
    wakes = WakeCoordinator(
        services,
        activity,
        proxy_access,
        limiter,
        clock,
        settings.proxy,
        history=wake_history,
        trust=service_trust,
    )
    alerts = settings.alerts
    alert_sinks = (
        [(alerts_cursor_key(configured.alerts.webhooks), make_alert_sink(alerts, clock, auditor))]
        if alerts.webhooks
        else []
    )
    siem = make_exporter(settings.siem, configured.siem.sinks, factory, clock, from_now=alert_sinks)
    checks = [
        database_check(engine),
        rate_limit_check(limiter),
        engine_check(runtime),
        secrets_check(provider),
    ]
    if siem.workers:
        checks.append(siem_check(siem))
    csrf = CsrfGuard(keyring, settings.http.cors_origins, auditor)
    # Idle until `wakedock serve` hands it the certificate it serves (server/certificates.py).
    certificate = CertificateWatch(
        clock, auditor, factory, tuple(settings.server.tls_expiry_warning_days)
    )
    reconciler = Reconciler(factory, clock, runtime)
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
        auditor=auditor,
        csrf=csrf,
        authenticator=Authenticator(codec, sessions, csrf, auditor),
        guard=GuardContext(mfa, auditor, request_weigher),
        login=login,
        password_changer=PasswordChanger(factory, limiter, users, auditor),
        mfa=mfa,
        users=users,
        signup=Signup(
            factory,
            clock,
            users,
            setup,
            auditor,
            registration_enabled=auth.registration_enabled,
        ),
        session_admin=SessionAdmin(clock, sessions),
        setup=setup,
        trusted_proxies=parse_networks(settings.http.trusted_proxies),
        files=files,
        runtime=runtime,
        services=services,
        reconciler=reconciler,
        discovery=make_discovery_watcher(settings.docker, reconciler, runtime),
        activity=activity,
        wakes=wakes,
        directory=ServiceDirectory(factory, services, settings.proxy.base_domain, clock),
        proxy_access=proxy_access,
        audit_chain=audit_chain,
        chain_checks=ChainChecks(factory, audit_chain, clock, auditor),
        siem=siem,
        metrics=Metrics(
            AuditCounters(factory),
            factory,
            siem.status,
            wakes.awake_names,
            certificate.seconds_left,
            requests=request_counts.exposition,
            edges=(
                (lambda: len(edges.attached())) if settings.edge.direct_routes_rendered else None
            ),
        ),
        request_counts=request_counts,
        effective_settings=EffectiveSettings(settings, secret_sources, factory, clock),
        jwt_keys=signing,
        secret_store=SecretStore(provider, settings.secrets.service_prefix, factory, clock),
        secret_watcher=make_secret_watcher(signing, provider, resolved, factory, clock),
        health=HealthChecks(checks),
        outages=outages,
        certificate=certificate,
        container_checks=ContainerChecks(services, clock),
        board=ServicesBoard(
            factory,
            services,
            wakes,
            clock,
            base_domain=settings.proxy.base_domain,
            max_awake=settings.proxy.max_awake,
        ),
        csp_reports=CspReports(limiter, auditor),
        details=ServiceDetails(
            factory,
            services,
            wakes,
            activity,
            wake_history,
            UsageSamples(services, clock),
            clock,
            base_domain=settings.proxy.base_domain,
        ),
        loading_pages=LoadingPages(files, auditor),
        secret_provider=provider,
        secret_sources=secret_sources,
    )
