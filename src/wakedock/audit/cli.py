"""`wakedock audit verify|archive|tail|export`: the audit trail from the shell.

The commands receive what they work on from cli.py (`open_trail`), never the whole wiring."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.archive import archive_events, verify_archive
from wakedock.audit.chain import AuditChain
from wakedock.audit.checks import verify_recorded
from wakedock.audit.export import EXPORT_FORMATS, AuditFilter, export_events, page_events
from wakedock.audit.service import Auditor
from wakedock.cli_state import CliState, cli_context, step
from wakedock.clock import Clock
from wakedock.errors import WakeDockError


@dataclass(frozen=True)
class AuditTrail:
    """The audit trail of an installation, as the commands use it."""

    db: sessionmaker[Session]
    chain: AuditChain
    clock: Clock
    # The cursor keys of the configured SIEM sinks: an archive keeps what they have not read.
    sinks: list[str]


OpenTrail = Callable[[CliState], AuditTrail]


def audit_group(open_trail: OpenTrail) -> click.Group:
    """The `audit` command group; `open_trail` opens the installation's trail."""

    @click.group("audit")
    def audit() -> None:
        """Verify, read and export the audit trail."""

    @audit.command("verify")
    @click.option(
        "--archive",
        "archive_file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="Verify an archive file written by `audit archive` instead of the database.",
    )
    @click.pass_obj
    def audit_verify(state: CliState, archive_file: Path | None) -> None:
        """Check the hash chain; name the first event changed, deleted or reordered (exit 1).

        A check of the database's chain is recorded in it (`audit_verify`: its start and its
        result), as the console's check is: the console's "Last verified" shows it."""
        trail = open_trail(state)
        if archive_file is not None:
            checked, problem = verify_archive(archive_file, trail.chain)
            if problem is None:
                click.echo(f"OK: {checked} archived events, chain intact")
                return
            click.secho(f"TAMPERED: {problem}", fg="red", err=True)
            sys.exit(1)
        step("verifying the audit hash chain")
        verdict = verify_recorded(
            trail.db,
            trail.chain,
            Auditor(trail.db, trail.clock),
            cli_context(),
            lambda n: step(f"{n} events checked"),
        )
        if verdict.ok:
            click.echo(f"OK: {verdict.checked} events, chain intact")
            return
        click.secho(f"TAMPERED: {verdict.problem}", fg="red", err=True)
        click.echo(f"({verdict.checked} events verified before it)", err=True)
        sys.exit(1)

    @audit.command("archive")
    @click.option(
        "--before", required=True, help="ISO 8601 time: archive events recorded before it."
    )
    @click.option(
        "--to", "destination", required=True, type=click.Path(path_type=Path, dir_okay=False)
    )
    @click.pass_obj
    def audit_archive(state: CliState, before: str, destination: Path) -> None:
        """Move old events to an archive file (verifiable on its own); an audited admin action."""
        try:
            cutoff = AuditFilter.parse(since=before).since
        except ValueError as exc:
            raise click.BadParameter(str(exc).replace("since", "--before")) from None
        if cutoff is None:
            raise click.BadParameter("--before is required")
        trail = open_trail(state)
        try:
            result = archive_events(
                trail.db, trail.chain, trail.clock, before=cutoff, destination=destination,
                context=cli_context(), sinks=trail.sinks, progress=step,
            )  # fmt: skip
        except WakeDockError as exc:
            raise click.ClickException(exc.detail) from None
        click.echo(
            f"archived {result.count} events (up to seq {result.up_to_seq}) to {result.path}, "
            f"sha256 {result.sha256}"
        )

    @audit.command("tail")
    @click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(1, 10_000))
    @click.pass_obj
    def audit_tail(state: CliState, lines: int) -> None:
        """The newest events, oldest first, one JSON object per line."""
        trail = open_trail(state)
        events = page_events(trail.db, AuditFilter(), limit=lines, newest_first=True)
        export_events(reversed(events), "jsonl", sys.stdout)

    @audit.command("export")
    @click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl")
    @click.option("--type", "type_", default=None, help="Only this event type.")
    @click.option("--severity", default=None)
    @click.option("--actor", default=None)
    @click.option("--since", default=None, help="ISO 8601 time, inclusive.")
    @click.option("--until", default=None, help="ISO 8601 time, exclusive.")
    @click.option(
        "--request-id",
        default=None,
        help="Only the events of this request: the reference a refusal shows.",
    )
    @click.pass_obj
    def audit_export(
        state: CliState,
        fmt: str,
        type_: str | None,
        severity: str | None,
        actor: str | None,
        since: str | None,
        until: str | None,
        request_id: str | None,
    ) -> None:
        """Every matching event, oldest first, as JSON lines or CSV on standard output."""
        try:
            selection = AuditFilter.parse(
                type=type_,
                severity=severity,
                actor=actor,
                since=since,
                until=until,
                request_id=request_id,
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        trail = open_trail(state)
        cursor = None
        first = True
        while True:
            events = page_events(trail.db, selection, limit=5_000, after=cursor)
            if not events:
                break
            export_events(events, fmt, sys.stdout, header=first)
            first = False
            cursor = events[-1].seq

    return audit
