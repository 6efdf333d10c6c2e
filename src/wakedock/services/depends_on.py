"""`depends_on`: the services a service needs awake first must exist and never form a cycle."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from wakedock.services.errors import InvalidServiceSpec
from wakedock.services.models import Service
from wakedock.services.spec import ServiceSpec


def check_dependencies(db: Session, spec: ServiceSpec) -> None:
    """InvalidServiceSpec unless every name in `spec.depends_on` exists, without a cycle."""
    if not spec.depends_on:
        return
    known = set(db.scalars(select(Service.name).where(Service.name.in_(spec.depends_on))))
    # Positions, not names: an error never repeats what the client sent.
    missing = [n for n, name in enumerate(spec.depends_on) if name not in known]
    if missing:
        raise InvalidServiceSpec(
            "depends_on names unknown services",
            extra={"field": "depends_on", "unknown": [f"depends_on[{n}]" for n in missing]},
        )
    graph = {
        row.name: ServiceSpec.model_validate_json(row.spec).depends_on
        for row in db.scalars(select(Service))
    }
    graph[spec.name] = spec.depends_on
    if _reaches(graph, spec.depends_on, spec.name):
        raise InvalidServiceSpec(
            "depends_on would make a cycle back to this service", extra={"field": "depends_on"}
        )


def _reaches(graph: dict[str, list[str]], start: list[str], target: str) -> bool:
    """True when following depends_on from `start` leads back to `target`."""
    seen: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            pending.extend(graph.get(name, []))
    return False
