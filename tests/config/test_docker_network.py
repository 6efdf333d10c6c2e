"""docker.network: a user-defined Docker network name, refused by name otherwise."""

from __future__ import annotations

import pytest

from wakedock.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("WAKEDOCK_"):
            monkeypatch.delenv(name)


def test_unset_by_default_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().docker.network is None
    monkeypatch.setenv("WAKEDOCK_DOCKER__NETWORK", "wakedock_services")
    assert load_settings().docker.network == "wakedock_services"


@pytest.mark.parametrize("name", ["host", "none", "bridge", "default", "Host"])
def test_a_predefined_network_is_refused_saying_why(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("WAKEDOCK_DOCKER__NETWORK", name)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "docker.network" in message
    assert "not a user-defined network" in message
    assert "no name resolution" in message


@pytest.mark.parametrize("name", ["container:wakedock", "-net", "a b", "x" * 129, ""])
def test_what_is_not_a_network_name_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("WAKEDOCK_DOCKER__NETWORK", name)
    with pytest.raises(ConfigError, match=r"docker\.network.*must be a Docker network name"):
        load_settings()


def test_the_swarm_runtime_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAKEDOCK_DOCKER__NETWORK", "wakedock_services")
    monkeypatch.setenv("WAKEDOCK_DOCKER__RUNTIME", "swarm")
    with pytest.raises(ConfigError, match=r"docker\.network applies to the engine runtime"):
        load_settings()
