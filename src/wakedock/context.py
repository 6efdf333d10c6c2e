"""Who is asking, from where: the context every audited action carries.

A low module: the web plumbing computes it once per request (web/deps.py), the proxy once per
visit, and the CLI and background jobs name themselves as a `system:`/`cli:` actor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RequestContext:
    """Who is asking, from where: carried into every audit event."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    actor: str | None = None

    def as_actor(self, name: str) -> RequestContext:
        """The same request, once its caller is known to be `name`."""
        return replace(self, actor=name)
