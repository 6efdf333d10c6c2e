"""The console's grants weighed as the API's are (docs/zerotrust.md, "Role grants and secret
reveals"): the `grant_role` profile, after the code; a deny is said beside the form and grants
nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import Harness, strong_password
from support.fake_runtime import FakeRuntime
from support.pages import events
from wakedock.clock import FakeClock
from wakedock.rbac.permissions import Role

from .conftest import Console, SignIn
from .test_console_users import code, post, user

pytestmark = pytest.mark.security


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(make_harness: Callable[..., Harness], runtime: FakeRuntime, clock: FakeClock) -> Harness:
    # A grant_role profile that denies every grant; the admin profile stays the default.
    refuse_grants = {"profiles": {"grant_role": {"step_up_at": 0, "deny_at": 0}}}
    return make_harness(clock=clock, runtime=runtime, zerotrust=refuse_grants)


def test_a_grant_the_grant_role_profile_denies_is_refused_after_the_code(
    h: Harness, clock: FakeClock, signed_in: SignIn
) -> None:
    admin: Console = signed_in(Role.ADMIN)
    h.create_user("hank", Role.VIEWER)
    assert admin.browser.get("/admin/users/hank").status_code == 200
    refused = post(
        admin, "/admin/users/hank/role", role="operator", code=code(h, clock, admin.username)
    )
    assert refused.status_code == 403  # type: ignore[attr-defined]
    assert "request refused by the access policy" in refused.text  # type: ignore[attr-defined]
    assert user(h, "hank").role == "viewer"  # type: ignore[union-attr]
    [denied] = [
        e for e in events(h, "zero_trust_decision") if '"purpose": "grant_role"' in e.details
    ]
    assert denied.outcome == "denied" and denied.actor == admin.username
    assert f"reference {denied.request_id}" in refused.text  # type: ignore[attr-defined]
    created = post(admin, "/admin/users", username="newroot", password=strong_password(),
                   role="admin", code=code(h, clock, admin.username))  # fmt: skip
    assert created.status_code == 403  # type: ignore[attr-defined]
    assert "request refused by the access policy" in created.text  # type: ignore[attr-defined]
    assert user(h, "newroot") is None
    # A change that grants nothing is not weighed by it.
    disabled = post(admin, "/admin/users/hank/disable", code=code(h, clock, admin.username))
    assert disabled.status_code == 303  # type: ignore[attr-defined]
