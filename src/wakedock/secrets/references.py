"""Secret references in a service's environment (S9.4): `secret:<path>#<key>`.

Saved as the reference only. When the service is saved, each new reference is checked: it must
lie under `secrets.service_prefix`, a caller without `secrets:read` may reference only
`<prefix>/<service name>/...`, and it must exist and be readable by WakeDock. The value is read
when the container starts (every start: a rotated secret is used from the next start), handed
to the engine, and never stored, returned, or logged. Every read is audited with the reference
and where it came from, never the value.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType, Outcome
from wakedock.audit.service import record_alone
from wakedock.clock import Clock
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Permission
from wakedock.rbac.roles import has_permission
from wakedock.secrets.base import (
    SecretForbidden,
    SecretNotFound,
    SecretProvider,
    SecretValue,
)
from wakedock.services.errors import InvalidServiceSpec
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec, parse_secret_ref


def references(spec: ServiceSpec) -> dict[str, tuple[str, str]]:
    """The environment variables that reference a secret: name -> (path, key)."""
    found = {}
    for name, value in spec.env.items():
        ref = parse_secret_ref(value)
        if ref is not None:
            found[name] = ref
    return found


def _runs_differently(before: ServiceSpec, after: ServiceSpec) -> bool:
    fields = ("image", "command", "readiness", "volumes", "tmpfs", "read_only_root")
    return any(getattr(before, f) != getattr(after, f) for f in fields)


def plain_environment(spec: ServiceSpec) -> dict[str, str]:
    """The environment without its secret variables (a container made before its first start)."""
    return {k: v for k, v in spec.env.items() if parse_secret_ref(v) is None}


class ServiceSecrets:
    def __init__(
        self,
        provider: SecretProvider | None,
        prefix: str,
        factory: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self._provider = provider
        self._prefix = prefix
        self._factory = factory
        self._clock = clock

    def may_reference(self, actor: Actor, service: str, path: str) -> bool:
        """Under the prefix; outside `<prefix>/<service>/` only with `secrets:read`."""
        parts = path.split("/")
        if parts[0] != self._prefix or len(parts) < 2:
            return False
        return has_permission(actor.role, Permission.SECRETS_READ) or parts[1] == service

    def check(
        self,
        actor: Actor,
        spec: ServiceSpec,
        context: RequestContext,
        previous: ServiceSpec | None = None,
    ) -> None:
        """Refuse (audited) a new reference the caller may not read, or that does not exist.

        A reference saved before is not checked again while what runs with it stays the same;
        a new image, command, readiness probe or volume could send it elsewhere, so then every
        reference must be one the caller may read."""
        kept = references(previous) if previous is not None else {}
        if previous is not None and _runs_differently(previous, spec):
            kept = {}
        for variable, (path, key) in sorted(references(spec).items()):
            if kept.get(variable) == (path, key):
                continue  # unchanged: checked when it was saved
            reference = f"secret:{path}#{key}"
            if not self.may_reference(actor, spec.name, path):
                self._audit_refusal(spec.name, variable, reference, context)
                raise SecretForbidden(
                    f"env.{variable}: you may not reference this secret; services use "
                    f"secrets under {self._prefix}/<service name>/"
                    + ("" if actor.is_admin else " (others need the secrets:read permission)"),
                    extra={"field": f"env.{variable}"},
                )
            self._read(spec.name, variable, path, key, context, "checked when saved")

    def resolve(self, spec: ServiceSpec, context: RequestContext) -> dict[str, str]:
        """The environment with every reference replaced by its current value."""
        environment = dict(spec.env)
        for variable, (path, key) in references(spec).items():
            secret = self._read(spec.name, variable, path, key, context, "container start")
            environment[variable] = secret.value
        return environment

    def _read(
        self,
        service: str,
        variable: str,
        path: str,
        key: str,
        context: RequestContext,
        purpose: str,
    ) -> SecretValue:
        reference = f"secret:{path}#{key}"
        if self._provider is None:
            raise InvalidServiceSpec(
                "no secrets provider is configured", extra={"field": f"env.{variable}"}
            )
        try:
            secret = self._provider.read(path, key)
        except ValueError:  # a name the provider cannot hold (e.g. an env name clash)
            raise InvalidServiceSpec(
                f"env.{variable}: the provider cannot hold a secret of this name",
                extra={"field": f"env.{variable}"},
            ) from None
        except SecretNotFound:
            raise InvalidServiceSpec(
                f"env.{variable}: the referenced secret does not exist",
                extra={"field": f"env.{variable}"},
            ) from None
        except SecretForbidden:
            self._audit_refusal(service, variable, reference, context)
            raise SecretForbidden(
                f"env.{variable}: WakeDock is not allowed to read the referenced secret",
                extra={"field": f"env.{variable}"},
            ) from None
        details = {
            "variable": variable,
            "reference": reference,
            "source": secret.source,
            "purpose": purpose,
        }
        event = Event(EventType.SECRET_ACCESS, target=f"service:{service}", details=details)
        record_alone(self._factory, event, context, at=self._clock.now())
        return secret

    def _audit_refusal(
        self, service: str, variable: str, reference: str, context: RequestContext
    ) -> None:
        details = {"variable": variable, "reference": reference}
        event = Event(
            EventType.SECRET_ACCESS, Outcome.DENIED, target=f"service:{service}", details=details
        )
        record_alone(self._factory, event, context, at=self._clock.now())
