"""A partial change of a service (PATCH /api/v1/services/{id}): the fields sent replace the
current ones (a nested object, e.g. `limits`, as a whole), and the result is validated and
policy-checked like a new spec.

`ServicePatch` names the same fields as `ServiceSpec` (tests/services/test_patch.py holds them
equal), each optional and typed, without the spec's bounds: those are checked once, on the
merged spec. Every error of a patch, its own shape or the merged spec's, is one
`InvalidServiceSpec` (422 `invalid_spec`) naming the fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from wakedock.services.errors import InvalidServiceSpec
from wakedock.services.loading_page import LoadingPage
from wakedock.services.spec import Access, Limits, PortMapping, Readiness, ServiceSpec, Volume


class ServicePatch(BaseModel):
    """The fields to change; a field not sent is left as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Only to repeat the current name: a service cannot be renamed.
    name: str | None = None
    display_name: str | None = None
    image: str | None = None
    command: list[str] | None = None
    env: dict[str, str] | None = None
    ports: list[PortMapping] | None = None
    volumes: list[Volume] | None = None
    limits: Limits | None = None
    readiness: Readiness | None = None
    wake_timeout_s: int | None = None
    idle_timeout_s: int | None = None
    stop_method: Literal["stop", "pause"] | None = None
    stop_signal: str | None = None
    stop_timeout_s: int | None = None
    hosts: list[str] | None = None
    access: Access | None = None
    depends_on: list[str] | None = None
    loading_page: LoadingPage | None = None
    privileged: bool | None = None
    cap_add: list[str] | None = None
    network_mode: str | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None
    uts_mode: str | None = None
    devices: list[str] | None = None
    read_only_root: bool | None = None
    tmpfs: list[str] | None = None

    @classmethod
    def parse(cls, sent: Any) -> ServicePatch:
        """The patch in a decoded JSON body; InvalidServiceSpec when it is not one."""
        try:
            return cls.model_validate(sent)
        except ValidationError as exc:
            raise _invalid(exc) from None

    def applied_to(self, current: ServiceSpec) -> ServiceSpec:
        """`current` with the sent fields replaced, validated as a whole."""
        if self.name is not None and self.name != current.name:
            raise InvalidServiceSpec("a service cannot be renamed", extra={"field": "name"})
        # Sent as JSON, merged as JSON: what was sent, not pydantic's defaults of nested objects.
        sent = self.model_dump(mode="json", exclude_unset=True)
        try:
            return ServiceSpec.model_validate({**current.model_dump(mode="json"), **sent})
        except ValidationError as exc:
            raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidServiceSpec:
    fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
    return InvalidServiceSpec(
        f"invalid service spec: {', '.join(fields)}", extra={"fields": fields}
    )
