"""`wakedock service ...` and `wakedock cis-check`: services from the shell, acting as an admin."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import docker.errors
import yaml
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from wakedock.cli_state import CliState, cli_context, step
from wakedock.db import transaction
from wakedock.errors import WakeDockError
from wakedock.rbac.permissions import Role
from wakedock.runtime.cis_images import Finding, ImageFacts, Verdict, check_image
from wakedock.runtime.cis_stack import (
    check_managed_container,
    check_stack,
    image_facts,
    stack_containers,
)
from wakedock.runtime.client import EngineClient
from wakedock.runtime.dockerfile import Dockerfile, DockerfileError, parse_dockerfile
from wakedock.services.errors import PolicyRefused
from wakedock.services.reconcile import Reconciler
from wakedock.services.service import ServiceManager
from wakedock.services.snapshots import Actor, ServiceView
from wakedock.services.spec import ServiceSpec
from wakedock.users.service import UserService

MAX_SPEC_BYTES = 1024 * 1024
# The project name `--stack` checks: deploy/compose.yaml's `name:` and the stack deploy name.
DEFAULT_STACK = "wakedock"


@dataclass(frozen=True)
class ServiceTools:
    """What the service commands work with; cli.py opens them from the installation."""

    services: ServiceManager
    reconciler: Reconciler
    db: sessionmaker[Session]
    users: UserService


OpenTools = Callable[[CliState], ServiceTools]


def _actor() -> Actor:
    context = cli_context()
    return Actor(name=context.actor or "cli", role=Role.ADMIN)


def _fail(exc: WakeDockError) -> click.ClickException:
    message = exc.detail
    if isinstance(exc, PolicyRefused):
        message += "".join(f"\n  - {v.field}: {v.message}" for v in exc.violations)
    return click.ClickException(message)


def _load_spec(path: Path) -> ServiceSpec:
    raw = path.read_bytes()
    if len(raw) > MAX_SPEC_BYTES:
        raise click.ClickException(f"{path}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path}: not YAML or JSON ({exc})") from None
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  - {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        ]
        raise click.ClickException(f"{path}: invalid service spec\n" + "\n".join(lines)) from None


def _owner_id(
    factory: sessionmaker[Session], users: UserService, username: str | None
) -> int | None:
    if username is None:
        return None
    try:
        with transaction(factory) as db:
            return users.by_username(db, username).id
    except WakeDockError as exc:
        raise _fail(exc) from None


def service_group(open_tools: OpenTools) -> click.Group:
    """The `service` command group; `open_tools` opens the installation's services."""

    @click.group("service")
    def service() -> None:
        """Manage services (acts as an admin; every change is audited as cli:<user>)."""

    @service.command("list")
    @click.pass_obj
    def service_list(state: CliState) -> None:
        """List services and their last known state."""
        c = open_tools(state)
        click.echo(f"{'ID':>4}  {'NAME':<24} {'SOURCE':<10} {'STATE':<9} IMAGE")
        for view in c.services.list():
            click.echo(
                f"{view.id:>4}  {view.name:<24} {view.source:<10} {view.state:<9} {view.spec.image}"
            )

    @service.command("add")
    @click.argument("spec_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
    @click.option("--owner", default=None, help="Username of the developer who will manage it.")
    @click.pass_obj
    def service_add(state: CliState, spec_file: Path, owner: str | None) -> None:
        """Create a service from a YAML or JSON spec file (its container is created, stopped)."""
        spec = _load_spec(spec_file)
        c = open_tools(state)
        owner_id = _owner_id(c.db, c.users, owner)
        step(f"creating the hardened container for {spec.name} ({c.services.runtime_kind})")
        try:
            view = c.services.create(_actor(), spec, cli_context(), owner_id=owner_id)
        except WakeDockError as exc:
            raise _fail(exc) from None
        click.echo(f"created service {view.name} (id {view.id}), stopped")

    def _operate(state: CliState, name: str, action: str) -> ServiceView:
        c = open_tools(state)
        step(f"{action} {name}")
        try:
            if action == "starting":
                return c.services.start(_actor(), name, cli_context())
            return c.services.stop(_actor(), name, cli_context())
        except WakeDockError as exc:
            raise _fail(exc) from None

    @service.command("start")
    @click.argument("name")
    @click.pass_obj
    def service_start(state: CliState, name: str) -> None:
        """Start a service."""
        click.echo(f"{name}: {_operate(state, name, 'starting').state}")

    @service.command("stop")
    @click.argument("name")
    @click.pass_obj
    def service_stop(state: CliState, name: str) -> None:
        """Stop (or pause, per its stop method) a service."""
        click.echo(f"{name}: {_operate(state, name, 'stopping').state}")

    @service.command("remove")
    @click.argument("name")
    @click.pass_obj
    def service_remove(state: CliState, name: str) -> None:
        """Remove a service and the container WakeDock made for it (no question asked; audited).

        A discovered service goes once its container is gone or unlabelled; that container itself
        is never removed."""
        c = open_tools(state)
        step(f"removing {name}")
        try:
            c.services.delete(_actor(), name, cli_context())
        except WakeDockError as exc:
            raise _fail(exc) from None
        click.echo(f"removed service {name}")

    @service.command("inspect")
    @click.argument("name")
    @click.pass_obj
    def service_inspect(state: CliState, name: str) -> None:
        """Print a service's spec and live status as JSON."""
        c = open_tools(state)
        try:
            view, live = c.services.status(name)
        except WakeDockError as exc:
            raise _fail(exc) from None
        out: dict[str, Any] = {
            "id": view.id,
            "name": view.name,
            "source": view.source,
            "runtime": view.runtime,
            "state": live.state.value if live is not None else "missing",
            "health": live.health if live is not None else None,
            "stop_reason": view.stop_reason,
            "writable_root_granted": view.writable_root_granted,
            "spec": view.spec.model_dump(mode="json"),
        }
        click.echo(json.dumps(out, indent=2, default=str))

    @service.command("reconcile")
    @click.pass_obj
    def service_reconcile(state: CliState) -> None:
        """Match the database with the engine now (also done when `serve` starts)."""
        c = open_tools(state)
        step("comparing services with the Docker engine")
        try:
            report = c.reconciler.run(cli_context())
        except WakeDockError as exc:
            raise _fail(exc) from None
        click.echo(
            f"checked {report.checked}; missing: {', '.join(report.missing) or 'none'}; "
            f"adopted: {', '.join(report.adopted) or 'none'}; "
            f"discovered: {', '.join(report.discovered) or 'none'}; "
            f"updated: {', '.join(report.updated) or 'none'}; "
            f"removed: {', '.join(report.removed) or 'none'}"
        )
        for problem in report.problems:
            click.echo(f"  ! {problem}", err=True)

    return service


@dataclass(frozen=True)
class CisTarget:
    """What one block of `cis-check` output is about, and what was found."""

    kind: str  # "service", "image", "dockerfile" or "stack"
    name: str
    findings: list[Finding]


def _print_targets(targets: list[CisTarget], as_json: bool) -> bool:
    """Print the findings (text or JSON); True when any is a FAIL."""
    failed = any(f.verdict is Verdict.FAIL for t in targets for f in t.findings)
    if as_json:
        out = [
            {"kind": t.kind, "name": t.name, "findings": [asdict(f) for f in t.findings]}
            for t in targets
        ]
        click.echo(json.dumps({"targets": out, "failed": failed}, indent=2))
        return failed
    for target in targets:
        click.echo(f"{target.kind} {target.name}")
        for f in target.findings:
            extra = "" if f.verdict is Verdict.PASS else f"  ({f.reason})"
            click.echo(f"  [{f.verdict}] {f.id:<5} {f.title}{extra}")
    return failed


def _read_dockerfile(path: Path) -> Dockerfile:
    raw = path.read_bytes()
    if len(raw) > MAX_SPEC_BYTES:
        raise click.ClickException(f"{path}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        return parse_dockerfile(raw.decode("utf-8", errors="replace"))
    except DockerfileError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def _read_image(engine: EngineClient, image: str) -> ImageFacts:
    try:
        return engine.call(lambda c: image_facts(c, image))
    except docker.errors.NotFound:
        raise click.ClickException(f"image {image!r} not found in the engine") from None


def _engine_targets(
    state: CliState, image: str | None, dockerfile: Path | None, project: str | None
) -> list[CisTarget]:
    """Section 4 for an image and/or a Dockerfile, section 5 for a stack's own containers."""
    parsed = _read_dockerfile(dockerfile) if dockerfile is not None else None
    engine = EngineClient(state.settings().docker.url) if image or project else None
    targets: list[CisTarget] = []
    try:
        facts = _read_image(engine, image) if engine and image else None
        if facts is not None or parsed is not None:
            kind, name = ("image", str(image)) if image else ("dockerfile", str(dockerfile))
            targets.append(CisTarget(kind, name, check_image(facts, parsed)))
        if engine and project:
            containers = engine.call(lambda c: stack_containers(c, project))
            if not containers:
                raise click.ClickException(f"no container carries project label {project!r}")
            for name, findings in check_stack(containers):
                targets.append(CisTarget("stack", f"{project}: {name}", findings))
    except docker.errors.NotFound:
        raise click.ClickException("a container of the stack went away; run it again") from None
    except WakeDockError as exc:
        raise _fail(exc) from None
    return targets


def cis_check_command(open_tools: OpenTools) -> click.Command:
    """`wakedock cis-check`; `open_tools` opens the installation's services."""

    @click.command("cis-check")
    @click.argument("name", required=False)
    @click.option("--image", default=None, help="Check an image (CIS section 4).")
    @click.option(
        "--dockerfile",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="Check a Dockerfile (CIS section 4); with --image, both.",
    )
    @click.option(
        "--project",
        default=None,
        help="Check the containers of this Compose project or Swarm stack (CIS section 5).",
    )
    @click.option("--stack", is_flag=True, help=f"Same as --project {DEFAULT_STACK}.")
    @click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
    @click.pass_obj
    def cis_check(
        state: CliState,
        name: str | None,
        image: str | None,
        dockerfile: Path | None,
        project: str | None,
        stack: bool,
        as_json: bool,
    ) -> None:
        """CIS Docker Benchmark v1.6.0 checks (exit 1 on a FAIL): section 5 for managed
        containers (the default) or a stack's own (--project, --stack), section 4 for an image
        (--image) or a Dockerfile (--dockerfile); advice beyond it is WARN (no exit status)."""
        project = project or (DEFAULT_STACK if stack else None)
        if image or dockerfile or project:
            if name:
                raise click.UsageError("a SERVICE name goes without --image/--dockerfile/--project")
            failed = _print_targets(_engine_targets(state, image, dockerfile, project), as_json)
            if failed:
                raise SystemExit(1)
            return
        c = open_tools(state)
        try:
            views = [c.services.get(name)] if name else c.services.list()
        except WakeDockError as exc:
            raise _fail(exc) from None
        targets: list[CisTarget] = []
        for view in views:
            containers: list[dict[str, Any]] = []
            if view.container_ref is not None:
                try:
                    containers = c.services.inspect(view)
                except WakeDockError as exc:
                    raise _fail(exc) from None
            if not containers and not as_json:
                click.echo(f"{view.name}: no container to check (state {view.state})")
            for attrs in containers:
                label = f"{view.name} ({str(attrs.get('Name', '')).lstrip('/')})"
                targets.append(CisTarget("service", label, check_managed_container(attrs)))
        if _print_targets(targets, as_json):
            raise SystemExit(1)

    return cis_check
