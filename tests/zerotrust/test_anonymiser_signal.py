"""The anonymiser list: the admin's file of Tor exits and VPN ranges, read again when it
changes, a bad line reported and skipped."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wakedock.clock import FakeClock
from wakedock.zerotrust.base import Attempt, Decision, Purpose
from wakedock.zerotrust.ranges import AddressRanges
from wakedock.zerotrust.signals.anonymisers import AnonymiserSignal

TOR_LIST = """\
# Tor exit nodes, fetched 2026-12-01
185.220.101.1
185.220.102.0/24   # a whole exit operator
2a0b:f4c2::/40
"""


def decision(signal: AnonymiserSignal, address: str) -> Decision | str | None:
    found = signal.weigh(Attempt(Purpose.SIGN_IN, address, datetime(2026, 12, 1, tzinfo=UTC)))
    return "none" if found is None else found.decisive


def replace(path: Path, text: str) -> None:
    """As a cron job does: write a new file, then rename it over the old one."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


@pytest.fixture
def tor_file(tmp_path: Path) -> Path:
    path = tmp_path / "tor-exits.txt"
    path.write_text(TOR_LIST)
    return path


def test_listed_addresses_are_denied_others_not(tor_file: Path) -> None:
    signal = AnonymiserSignal(tor_file, check_seconds=0)
    assert len(signal) == 3 and signal.problems == []
    assert decision(signal, "185.220.101.1") is Decision.DENY
    assert decision(signal, "185.220.102.77") is Decision.DENY
    assert decision(signal, "2a0b:f4c2:1::5") is Decision.DENY
    assert decision(signal, "185.220.101.2") == "none"


def test_scored_only_when_deny_is_off_or_the_address_is_allow_listed(tor_file: Path) -> None:
    scored = AnonymiserSignal(tor_file, deny=False)
    found = scored.weigh(Attempt(Purpose.SIGN_IN, "185.220.101.1", datetime.now(UTC)))
    assert found is not None and found.decisive is None and found.score == 60
    exempt = AnonymiserSignal(tor_file, exempt=AddressRanges.from_strings(["185.220.102.0/24"]))
    assert decision(exempt, "185.220.102.9") is None
    assert decision(exempt, "185.220.101.1") is Decision.DENY


def test_the_file_is_read_again_when_it_changes(tor_file: Path) -> None:
    signal = AnonymiserSignal(tor_file, check_seconds=0)
    replace(tor_file, "198.51.100.0/24\n")
    assert decision(signal, "198.51.100.20") is Decision.DENY
    assert decision(signal, "185.220.101.1") == "none"
    # Same size, new content, written in place: the modification time tells.
    tor_file.write_text("198.51.101.0/24\n")
    os.utime(tor_file, ns=(0, os.stat(tor_file).st_mtime_ns + 1_000_000_000))
    assert decision(signal, "198.51.101.20") is Decision.DENY
    assert decision(signal, "198.51.100.20") == "none"


def test_changes_are_looked_for_at_most_every_check_seconds(tor_file: Path) -> None:
    clock = FakeClock()
    signal = AnonymiserSignal(tor_file, check_seconds=5, clock=clock)
    replace(tor_file, "198.51.100.0/24\n")
    assert decision(signal, "198.51.100.20") == "none"  # not looked at yet
    clock.advance(5)
    assert decision(signal, "198.51.100.20") is Decision.DENY


def test_a_bad_line_is_reported_and_skipped_not_fatal(
    tor_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    replace(tor_file, "185.220.101.1\nexit-node-of-doom\n185.220.101.300\n198.51.100.0/24\n")
    signal = AnonymiserSignal(tor_file)
    assert len(signal) == 2
    assert signal.problems == [
        f"{tor_file}:2: not an IP address or network, skipped",
        f"{tor_file}:3: not an IP address or network, skipped",
    ]
    assert f"{tor_file}:2: not an IP address" in caplog.text
    assert "exit-node-of-doom" not in caplog.text  # the line is named, not echoed
    assert decision(signal, "198.51.100.1") is Decision.DENY


def test_a_vanished_file_keeps_the_last_list(
    tor_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signal = AnonymiserSignal(tor_file, check_seconds=0)
    tor_file.unlink()
    assert decision(signal, "185.220.101.1") is Decision.DENY
    assert "keeping the last list (3 entries)" in caplog.text


def test_a_missing_file_at_start_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"zerotrust\.anonymiser_file: cannot read .*absent"):
        AnonymiserSignal(tmp_path / "absent")
