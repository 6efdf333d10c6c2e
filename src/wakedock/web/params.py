"""Numbers accepted in paths and query strings, bounded at the edge.

A number no row can hold is refused with a 422 before it reaches the database: SQLite cannot
bind an integer beyond 64 bits, and PostgreSQL refuses one beyond its column's type (the key
columns are 32-bit INTEGERs), both as a 500 otherwise. Every integer path or query parameter
uses one of these types (tests/web/test_numeric_inputs.py walks the routes to check it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# The key columns (users, services, sessions' owners) are INTEGER: 32 bits on PostgreSQL.
MAX_ROW_ID = 2**31 - 1
# Offsets and audit sequence numbers are compared with 64-bit (BIGINT) values.
MAX_BIGINT = 2**63 - 1

RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
"""The id of a user or a service (a path segment or a query value)."""

Offset = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
"""How many rows to skip, or an audit sequence number to continue after."""
