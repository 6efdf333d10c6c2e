"""The proxy's route table without an engine: WakeDock's calls match with or without a version
prefix, everything else (and every path the engine's router would clean) does not."""

from __future__ import annotations

import pytest

from wakedock.sockproxy.body import UnreadableBody, parse_body
from wakedock.sockproxy.routes import Action, match


@pytest.mark.parametrize("prefix", ["", "/v1.41", "/v1.24", "/v1.45"])
@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/_ping", Action.OPEN),
        ("GET", "/images/wakedock-test/busybox:1/json", Action.OPEN),
        ("POST", "/containers/create", Action.CREATE_CONTAINER),
        ("POST", "/containers/abc123/pause", Action.CONTAINER),
        ("DELETE", "/containers/wakedock-web", Action.CONTAINER),
        ("GET", "/events", Action.EVENTS),
    ],
)
def test_wakedock_calls_match(prefix: str, method: str, path: str, action: Action) -> None:
    found = match(method, prefix + path, swarm=False)
    assert found is not None and found.route.action is action


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/containers/abc/exec"),
        ("POST", "/containers/abc/attach"),
        ("GET", "/containers/abc/archive"),
        ("PUT", "/containers/abc/archive"),
        ("POST", "/containers/abc/kill"),
        ("POST", "/images/create"),
        ("POST", "/build"),
        ("POST", "/swarm/init"),
        ("GET", "/services"),  # Swarm calls need --swarm
        ("POST", "/v1.23/containers/abc/start"),  # HostConfig on start before 1.24
        ("GET", "/containers/abc/../def/json"),
        ("GET", "/images/a/../../containers/abc/json"),
        ("GET", "//containers/json"),
        ("GET", "/containers/json/"),
        ("GET", "/containers/%2e%2e/json"),
    ],
)
def test_everything_else_is_refused(method: str, path: str) -> None:
    assert match(method, path, swarm=False) is None


def test_swarm_calls_need_the_flag() -> None:
    assert match("POST", "/v1.41/services/x1/update", swarm=True) is not None
    assert match("POST", "/v1.41/services/x1/update", swarm=False) is None


def test_body_field_names_fold_as_the_engine_reads_them() -> None:
    body = parse_body(b'{"hostconfig": {"Privileged": false, "PRIVILEGED": true}}')
    assert body == {"HostConfig": {"Privileged": True}}
    with pytest.raises(UnreadableBody):
        parse_body('{"\u212aernelMemory": 1}'.encode())
    with pytest.raises(UnreadableBody):
        parse_body(b"{nope")
