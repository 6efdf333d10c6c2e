"""`wakedock backup create|restore`: the database, the audit chain and the keys that verify it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wakedock.backup.database import BackupError
from wakedock.backup.service import create_backup, restore_backup
from wakedock.cli_state import CliState, step


@click.group("backup")
def backup_group() -> None:
    """Back up and restore an installation (database, audit chain, keys)."""


@backup_group.command("create")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def backup_create(state: CliState, out: Path) -> None:
    """Write a consistent backup to OUT (mode 0600: it holds the keys; store it as a secret)."""
    settings = state.settings()
    if out.exists():
        raise click.ClickException(f"{out} exists: a backup is never overwritten")
    try:
        manifest = create_backup(settings, out, step)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    for setting, state_ in sorted(manifest.keys.items()):
        if state_ == "configured":
            click.secho(
                f"note: {setting} is configured outside the data directory and is NOT in the "
                "backup: keep it with the backup, in your secret store",
                fg="yellow",
                err=True,
            )
    click.echo(
        f"backup written to {out}: {manifest.database} database, "
        f"{len(manifest.members)} members, audit head seq {manifest.audit_seq} "
        f"{manifest.audit_hash[:16]}"
    )


@backup_group.command("restore")
@click.argument("backup", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace a target that already holds data.")
@click.pass_obj
def backup_restore(state: CliState, backup: Path, force: bool) -> None:
    """Restore BACKUP into the configured data directory and database, then verify the chain."""
    settings = state.settings()
    try:
        restored = restore_backup(settings, backup, force=force, progress=step)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = restored.manifest
    click.echo(
        f"restored the {manifest.database} database and {restored.files} files "
        f"(backup of {manifest.created_at}, WakeDock {manifest.wakedock_version})"
    )
    if not restored.verdict.ok:
        click.secho(f"TAMPERED: {restored.verdict.problem}", fg="red", err=True)
        sys.exit(1)
    if not restored.head_matches:
        click.secho(
            f"MISMATCH: the restored audit head is {restored.head}, the manifest says "
            f"seq {manifest.audit_seq}",
            fg="red",
            err=True,
        )
        sys.exit(1)
    click.echo(
        f"OK: {restored.verdict.checked} events, chain intact; head seq {manifest.audit_seq} "
        f"{manifest.audit_hash[:16]} matches the backup"
    )
