"""`wakedock audit verify|tail|export`: the audit trail from the shell."""

from __future__ import annotations

import sys

import click

from wakedock.audit.export import EXPORT_FORMATS, AuditFilter, export_events, page_events
from wakedock.audit.verify import verify_chain
from wakedock.cli_state import CliState, step


@click.group()
def audit() -> None:
    """Verify, read and export the audit trail."""


@audit.command("verify")
@click.pass_obj
def audit_verify(state: CliState) -> None:
    """Check the hash chain; name the first event changed, deleted or reordered (exit 1)."""
    c = state.components()
    step("verifying the audit hash chain")
    verdict = verify_chain(c.db, c.audit_chain, lambda n: step(f"{n} events checked"))
    if verdict.ok:
        click.echo(f"OK: {verdict.checked} events, chain intact")
        return
    click.secho(f"TAMPERED: {verdict.problem}", fg="red", err=True)
    click.echo(f"({verdict.checked} events verified before it)", err=True)
    sys.exit(1)


@audit.command("tail")
@click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def audit_tail(state: CliState, lines: int) -> None:
    """The newest events, oldest first, one JSON object per line."""
    c = state.components()
    events = page_events(c.db, AuditFilter(), limit=lines, newest_first=True)
    export_events(reversed(events), "jsonl", sys.stdout)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl")
@click.option("--type", "type_", default=None, help="Only this event type.")
@click.option("--severity", default=None)
@click.option("--actor", default=None)
@click.option("--since", default=None, help="ISO 8601 time, inclusive.")
@click.option("--until", default=None, help="ISO 8601 time, exclusive.")
@click.pass_obj
def audit_export(
    state: CliState,
    fmt: str,
    type_: str | None,
    severity: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Every matching event, oldest first, as JSON lines or CSV on standard output."""
    try:
        selection = AuditFilter.parse(
            type=type_, severity=severity, actor=actor, since=since, until=until
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    c = state.components()
    out = sys.stdout
    cursor = None
    first = True
    while True:
        events = page_events(c.db, selection, limit=5_000, after=cursor)
        if not events:
            break
        export_events(events, fmt, out, header=first)
        first = False
        cursor = events[-1].seq
