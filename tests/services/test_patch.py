"""ServicePatch: the same fields as ServiceSpec, and the shape the API documents for a PATCH."""

from __future__ import annotations

import pytest

from wakedock.services.errors import InvalidServiceSpec
from wakedock.services.patch import ServicePatch
from wakedock.services.spec import ServiceSpec


def _spec() -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": "app",
            "image": "busybox:latest",
            "readiness": {"type": "tcp", "port": 8080},
            "limits": {"memory_mb": 256, "cpus": 0.5},
        }
    )


def test_a_patch_names_every_field_of_a_spec() -> None:
    assert set(ServicePatch.model_fields) == set(ServiceSpec.model_fields)


def test_only_the_sent_fields_change_and_a_nested_object_is_replaced_whole() -> None:
    current = _spec()
    changed = ServicePatch.parse({"idle_timeout_s": 60, "limits": {"cpus": 1.0}}).applied_to(
        current
    )
    assert changed.idle_timeout_s == 60
    assert changed.image == current.image
    assert changed.limits.cpus == 1.0
    # Not sent inside `limits`: the spec's default, not the current value.
    assert (
        changed.limits.memory_mb
        == ServiceSpec.model_fields["limits"].get_default(call_default_factory=True).memory_mb
    )


@pytest.mark.parametrize(
    ("sent", "fields"),
    [
        ({"bogus": 1}, ["bogus"]),
        ({"limits": {"memory_mb": "lots"}}, ["limits.memory_mb"]),
        ([1, 2], [""]),
    ],
)
def test_a_bad_patch_names_its_fields(sent: object, fields: list[str]) -> None:
    with pytest.raises(InvalidServiceSpec) as raised:
        ServicePatch.parse(sent)
    assert raised.value.extra["fields"] == fields


def test_the_merged_spec_is_validated_with_the_specs_bounds() -> None:
    with pytest.raises(InvalidServiceSpec) as raised:
        ServicePatch.parse({"idle_timeout_s": 1}).applied_to(_spec())
    assert raised.value.extra["fields"] == ["idle_timeout_s"]


def test_a_rename_is_refused_but_repeating_the_name_is_not() -> None:
    with pytest.raises(InvalidServiceSpec, match="renamed"):
        ServicePatch.parse({"name": "other"}).applied_to(_spec())
    assert ServicePatch.parse({"name": "app"}).applied_to(_spec()).name == "app"
