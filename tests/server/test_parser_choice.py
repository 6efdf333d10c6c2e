"""Which HTTP parser `server.http_parser` gives `wakedock serve` (the guards on each are in
test_parsers.py)."""

from __future__ import annotations

import pytest

from wakedock.config import ConfigError, load_settings
from wakedock.server.h11_protocol import GuardedH11Protocol
from wakedock.server.httptools_protocol import GuardedHttpToolsProtocol
from wakedock.server.protocol import ConnectionGuards, choose_loop, choose_parser


def test_auto_takes_httptools_when_it_is_installed() -> None:
    # httptools is a pinned dependency: "auto", the default, must find it.
    assert load_settings().server.http_parser == "auto"
    assert choose_parser("auto") == "httptools"
    assert choose_parser("h11") == "h11"
    assert choose_parser("httptools") == "httptools"


def test_each_parser_class_runs_the_guards_not_uvicorns_own_entry_points() -> None:
    # With the bases in the other order, uvicorn's methods would shadow the guards.
    for guarded in (GuardedH11Protocol, GuardedHttpToolsProtocol):
        for name in ("connection_made", "connection_lost", "data_received", "shutdown"):
            assert getattr(guarded, name) is getattr(ConnectionGuards, name), (guarded, name)


def test_an_unknown_parser_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="http_parser"):
        load_settings(overrides={"server": {"http_parser": "picohttp"}})


def test_auto_takes_uvloop_when_it_is_installed() -> None:
    # uvloop is a pinned dependency (not on Windows): "auto", the default, must find it.
    assert load_settings().server.event_loop == "auto"
    assert choose_loop("auto") == "uvloop"
    assert choose_loop("asyncio") == "asyncio"
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings(overrides={"server": {"event_loop": "trio"}})
