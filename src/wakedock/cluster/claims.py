"""Things that must happen once across processes: a key claimed by its first taker.

A claim is one row per key with its expiry, inserted with ON CONFLICT DO NOTHING: the process
whose insert added the row is the one that goes ahead (redeems the ticket, writes the audit
event); every other one (another worker, a replica, a replay) sees no row added. On PostgreSQL
a concurrent insert of the same key waits for the first transaction and then adds nothing; on
SQLite writes are serialised. Expired rows are deleted by the next claim, so the table holds
only what can still be claimed again (a key must stay claimed at least as long as what it
guards can be presented: a ticket until its own expiry).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from wakedock.cluster.models import Claim

KEY_LENGTH = 200


def claim_first(db: Session, key: str, until: datetime, *, now: datetime) -> bool:
    """Claim `key` until `until` in the caller's transaction: True for its first claimer only
    (the claim takes effect with the transaction's commit; a rollback gives it up). A key
    longer than the column is stored as its digest."""
    if len(key) > KEY_LENGTH:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    db.execute(delete(Claim).where(Claim.expires_at <= now))
    dialect = db.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    added = db.execute(
        insert(Claim)
        .values(key=key, expires_at=until)
        .on_conflict_do_nothing(index_elements=["key"])
        # RETURNING, not the row count: psycopg reports -1 for this statement here.
        .returning(Claim.key)
    )
    return added.scalar_one_or_none() is not None
