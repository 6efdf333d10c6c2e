"""The `wakedock` command."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

import click

from wakedock import __version__
from wakedock.audit.cli import AuditTrail, audit_group
from wakedock.audit.configuration import record_configuration
from wakedock.backup.cli import backup_group
from wakedock.cli_state import CliState, cli_context, step
from wakedock.cluster.edges import EdgeRegistry
from wakedock.components import Components, build_components
from wakedock.config import Settings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.edge.cli import EdgeTools, edge_group
from wakedock.edge.routes import DirectRoutes
from wakedock.errors import WakeDockError
from wakedock.health.cli import healthcheck_command
from wakedock.rbac.permissions import Role
from wakedock.secrets.cli import SigningKeys, config_group, secrets_group
from wakedock.services.cli import ServiceTools, cis_check_command, service_group
from wakedock.sockproxy.cli import socket_proxy_command


@click.group()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WAKEDOCK_CONFIG",
    help="YAML configuration file.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Data directory (default ~/.wakedock, or WAKEDOCK_DATA_DIR).",
)
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, data_dir: Path | None) -> None:
    """WakeDock: wake Docker services on demand, behind a hardened security layer."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    ctx.obj = CliState(config_file, overrides)


def _components(
    state: CliState, settings: Settings | None = None, *, run_migrations: bool = True
) -> Components:
    """Every component, wired from the settings (migrations applied, unless a parent process
    applied them already)."""
    settings = settings or state.settings()
    if run_migrations:
        step(f"opening the database in {settings.data_dir} (applying migrations)")
    try:
        return build_components(settings, run_migrations=run_migrations)
    except WakeDockError as exc:  # e.g. Vault sealed: say which, without a traceback
        raise click.ClickException(exc.detail) from None
    except ValueError as exc:  # a setting that cannot be used (webhook, sink, key...)
        raise click.ClickException(str(exc)) from None


def _audit_trail(state: CliState) -> AuditTrail:
    c = _components(state)
    return AuditTrail(c.db, c.audit_chain, c.clock, [w.key for w in c.siem.workers])


def _service_tools(state: CliState) -> ServiceTools:
    c = _components(state)
    return ServiceTools(c.services, c.reconciler, c.db, c.users)


def _signing_keys(state: CliState) -> SigningKeys:
    c = _components(state)
    return SigningKeys(c.jwt_keys, c.settings.secrets.refresh_seconds, c.secret_provider)


def _edge_tools(state: CliState) -> EdgeTools:
    from wakedock.server.run import ensure_tls_files

    c = _components(state)
    tls = ensure_tls_files(c, step)  # the same certificate as `wakedock serve`
    routes = DirectRoutes(c.services.endpoint, c.services.engine_status, c.clock)
    return EdgeTools(
        c.settings,
        c.services.list,
        c.auditor.record,
        tls.cert,
        tls.key,
        tls.generated,
        routes,
        services_marker=c.services.change_marker,
        registry=EdgeRegistry(c.db, c.clock),
    )


@main.command()
def version() -> None:
    """Print the WakeDock version."""
    click.echo(f"wakedock {__version__}")


@main.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8443).")
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Serve plain HTTP. For local testing only: prints a warning.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Data directory (same as the global option).",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.pass_obj
def serve(
    state: CliState,
    host: str | None,
    port: int | None,
    insecure_http: bool,
    data_dir: Path | None,
    log_level: str,
) -> None:
    """Run the WakeDock server (HTTPS, TLS 1.3)."""
    from wakedock.server import workers
    from wakedock.server.run import serve as run_server

    if data_dir is not None:
        state.overrides["data_dir"] = data_dir
    server = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    listening = workers.inherited()
    if listening is not None:  # one of several workers: the parent did the start-up steps
        components = _components(state, state.settings(server=server), run_migrations=False)
        handed = os.environ.pop(workers.SETUP_TOKEN, None)
        if handed is not None:
            components.setup.take_over(handed)
        run_server(
            components, insecure_http=insecure_http, log_level=log_level, listening=listening
        )
        return
    step("checking configuration")
    settings = state.settings(server=server)
    count = settings.server.worker_count()
    if count > 1 and settings.rate_limit.storage_url.get_secret_value().startswith("memory"):
        raise click.ClickException(
            f"server.workers is {settings.server.workers} ({count} processes), but the "
            "rate-limit store is in memory: each worker would keep its own budgets (login "
            "attempts, wakes per address), so a client would get one budget per worker. Set "
            "rate_limit.storage_url to a Redis URL (redis://host:6379/0) shared by the "
            "workers, or server.workers: 1."
        )
    components = _components(state, settings)
    opened = components.signup.open_setup()
    if opened is not None:
        token, expires = opened
        click.secho(
            "No user exists yet. Create the first admin within 15 minutes with this one-time "
            f"setup token (valid until {expires:%H:%M:%S} UTC):\n    {token}\n"
            'POST it to /api/v1/auth/setup with {"token", "username", "password"}, or run '
            "`wakedock user create NAME --role admin --password-stdin`.",
            fg="cyan",
            err=True,
        )
    changed = record_configuration(
        components.db, components.clock, settings, RequestContext(actor="system:startup")
    )
    if changed:
        step(f"configuration recorded in the audit trail (changed: {', '.join(changed)})")
    _check_docker_network(components)
    if settings.docker.reconcile_on_start:
        _reconcile_at_start(components)
    if count == 1:
        run_server(components, insecure_http=insecure_http, log_level=log_level)
        return
    _serve_workers(components, count, insecure_http=insecure_http, log_level=log_level)


def _serve_workers(
    components: Components, count: int, *, insecure_http: bool, log_level: str
) -> None:
    """Bind the socket and run `count` worker processes on it (server/workers.py)."""
    import logging

    from wakedock.server import workers

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from wakedock.server.run import ACCEPT_BACKLOG, ensure_tls_files

    settings = components.settings
    if not insecure_http:  # generated once here, not by each worker at the same moment
        ensure_tls_files(components, step)
    env = dict(os.environ)
    handed = components.setup.handed_over()
    if handed is not None:
        env[workers.SETUP_TOKEN] = handed
    host, port = settings.server.host, settings.server.port
    try:
        sock = workers.bind(host, port, ACCEPT_BACKLOG)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
    # The workers open their own connections: none of this process's stays open meanwhile.
    components.engine.dispose()
    step(f"starting {count} worker processes on {host}:{port}")
    sys.exit(workers.Supervisor(count, sock, sys.argv[1:], env).run())


def _check_docker_network(components: Components) -> None:
    """docker.network must be a user-defined network of the engine, or every wake would fail:
    start-up stops here. An engine that cannot be reached only warns, as reconciling does."""
    from wakedock.runtime.docker_engine import DockerEngineRuntime
    from wakedock.runtime.network import NetworkUnusable

    network = components.settings.docker.network
    if network is None or not isinstance(components.runtime, DockerEngineRuntime):
        return
    step(f"checking docker.network ({network}) on the Docker engine")
    try:
        components.runtime.check_network()
    except NetworkUnusable as exc:
        raise click.ClickException(exc.detail) from None
    except WakeDockError as exc:
        click.secho(f"warning: {exc.detail}; docker.network not checked", fg="yellow", err=True)


def _reconcile_at_start(components: Components) -> None:
    """Match services with the engine before serving; a down daemon must not stop WakeDock."""
    step(f"reconciling services with the Docker engine ({components.runtime.kind})")
    try:
        report = components.reconciler.run(RequestContext(actor="system:startup"))
    except WakeDockError as exc:
        click.secho(f"warning: {exc.detail}; reconciliation skipped", fg="yellow", err=True)
        return
    for problem in report.problems:
        click.secho(f"warning: {problem}", fg="yellow", err=True)
    step(
        f"{report.checked} service(s) checked, {len(report.missing)} missing, "
        f"{len(report.discovered)} discovered"
    )


@main.command()
@click.pass_obj
def migrate(state: CliState) -> None:
    """Create or upgrade the database schema."""
    _components(state)
    click.echo("database schema is up to date")


@main.group()
def user() -> None:
    """Manage user accounts."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise click.UsageError("give --password-stdin to read the password from standard input")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise click.ClickException("the two passwords differ")
    return first


@user.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--email", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def user_create(
    state: CliState, username: str, role: str, email: str | None, password_stdin: bool
) -> None:
    """Create a user (the first admin is created this way)."""
    password = _read_password(password_stdin)
    c = _components(state)
    step("hashing the password (argon2id)")
    try:
        with transaction(c.db) as db:
            created = c.users.create(
                db,
                cli_context(),
                username=username,
                password=password,
                role=Role(role),
                email=email,
            )
    except WakeDockError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"created user {created.username} (role {created.role}, id {created.id})")


@user.command("list")
@click.option("--search", default=None)
@click.pass_obj
def user_list(state: CliState, search: str | None) -> None:
    """List users."""
    c = _components(state)
    with transaction(c.db) as db:
        users = c.users.search(db, search, limit=10_000, offset=0)
        click.echo(f"{'ID':>5}  {'USERNAME':<24} {'ROLE':<10} {'STATE':<9} EMAIL")
        for u in users:
            state_text = "disabled" if u.disabled else "active"
            click.echo(f"{u.id:>5}  {u.username:<24} {u.role:<10} {state_text:<9} {u.email or ''}")


def _set_disabled(state: CliState, username: str, disabled: bool) -> None:
    c = _components(state)
    try:
        with transaction(c.db) as db:
            target = c.users.by_username(db, username)
            c.users.update(db, cli_context(), target, disabled=disabled)
    except WakeDockError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"user {username.lower()} {'disabled, sessions revoked' if disabled else 'enabled'}")


@user.command("disable")
@click.argument("username")
@click.pass_obj
def user_disable(state: CliState, username: str) -> None:
    """Disable a user and revoke all its sessions."""
    _set_disabled(state, username, True)


@user.command("enable")
@click.argument("username")
@click.pass_obj
def user_enable(state: CliState, username: str) -> None:
    """Enable a disabled user."""
    _set_disabled(state, username, False)


@user.command("mfa-reset")
@click.argument("username")
@click.pass_obj
def user_mfa_reset(state: CliState, username: str) -> None:
    """Clear a user's MFA (lost device) and revoke its sessions; it must enrol again."""
    c = _components(state)
    try:
        with transaction(c.db) as db:
            target = c.users.by_username(db, username)
            revoked = c.mfa.reset(db, cli_context(), target.id)
    except WakeDockError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"MFA reset for {target.username}; {revoked} session(s) revoked")


main.add_command(service_group(_service_tools))
main.add_command(cis_check_command(_service_tools))
main.add_command(audit_group(_audit_trail))
main.add_command(config_group)
main.add_command(secrets_group(_signing_keys))
main.add_command(edge_group(_edge_tools))
main.add_command(healthcheck_command)
main.add_command(socket_proxy_command)
main.add_command(backup_group)

if __name__ == "__main__":
    main()
