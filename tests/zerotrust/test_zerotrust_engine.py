"""The engine: weighted sums per purpose, decisive findings, a failing signal's handling."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from wakedock.config import ZeroTrustSettings
from wakedock.zerotrust.base import Assessment, Attempt, Decision, Finding, Purpose
from wakedock.zerotrust.build import build_engine, profiles_from
from wakedock.zerotrust.engine import Profile, ZeroTrustEngine
from wakedock.zerotrust.ranges import AddressRanges
from wakedock.zerotrust.signals.client import UserAgentSignal
from wakedock.zerotrust.signals.network import NetworkSignal

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
HEADLESS = CHROME.replace("Chrome/", "HeadlessChrome/")
BROWSER_HEADERS = {"accept": "text/html", "accept-language": "en"}


def attempt(
    purpose: Purpose = Purpose.SIGN_IN, address: str = "198.51.100.7", user_agent: str = CHROME
) -> Attempt:
    return Attempt(purpose, address, AT, user_agent=user_agent, headers=BROWSER_HEADERS)


def engine(settings: ZeroTrustSettings | None = None) -> ZeroTrustEngine:
    return build_engine(settings or ZeroTrustSettings())


class Fixed:
    """A signal that always finds the same thing (to drive the sums exactly)."""

    def __init__(self, name: str, score: float, decisive: Decision | None = None) -> None:
        self.name, self._finding = name, Finding(name, score, f"{name} found", decisive)

    def weigh(self, attempt: Attempt) -> Finding | None:
        return self._finding


class Broken:
    name = "broken"

    def weigh(self, attempt: Attempt) -> Finding | None:
        raise RuntimeError("database is down")


def test_an_ordinary_browser_sign_in_is_allowed_with_no_findings() -> None:
    assessment = engine().assess(attempt())
    assert assessment == Assessment(Decision.ALLOW, 0.0, ())


def test_a_scanner_is_denied_at_sign_in() -> None:
    assessment = engine().assess(attempt(user_agent="sqlmap/1.8#stable (https://sqlmap.org)"))
    assert assessment.decision is Decision.DENY
    assert assessment.reasons == ("user_agent: the user agent of an attack tool or scanner",)


def test_admin_is_stricter_than_sign_in_for_the_same_attempt() -> None:
    """A headless browser (40 points): allowed to sign in (scored, so audited), stepped up for
    an admin action, a role grant or a secret's reveal."""
    zt = engine()
    decisions = {p: zt.assess(attempt(p, user_agent=HEADLESS)).decision for p in Purpose}
    assert decisions[Purpose.SIGN_IN] is Decision.ALLOW
    assert decisions[Purpose.REQUEST] is Decision.ALLOW
    assert decisions[Purpose.ADMIN] is Decision.STEP_UP
    assert decisions[Purpose.GRANT_ROLE] is Decision.STEP_UP
    assert decisions[Purpose.REVEAL_SECRET] is Decision.STEP_UP
    assert zt.assess(attempt(user_agent=HEADLESS)).score == 40


def test_the_explicit_deny_wins_over_a_trusted_and_allowed_network() -> None:
    settings = ZeroTrustSettings(
        deny_networks=["198.51.100.7/32"],
        allow_networks=["198.51.100.0/24"],
        trusted_networks=["198.51.100.0/24"],
    )
    assessment = engine(settings).assess(attempt())
    assert assessment.decision is Decision.DENY
    assert assessment.reasons == ("network: the address is on the network deny list",)
    neighbour = engine(settings).assess(attempt(address="198.51.100.8"))
    assert neighbour.decision is Decision.ALLOW
    assert neighbour.score == -30


def test_a_trusted_network_lowers_the_score_below_a_step_up() -> None:
    settings = ZeroTrustSettings(trusted_networks=["198.51.100.0/24"])
    outside = engine(settings).assess(attempt(Purpose.ADMIN, "192.0.2.200", user_agent=HEADLESS))
    inside = engine(settings).assess(attempt(Purpose.ADMIN, user_agent=HEADLESS))
    assert (outside.decision, outside.score) == (Decision.STEP_UP, 40)
    assert (inside.decision, inside.score) == (Decision.ALLOW, 10)


def test_an_allow_listed_network_is_stepped_up_never_denied_on_points() -> None:
    settings = ZeroTrustSettings(allow_networks=["198.51.100.0/24"])
    scanner = "Nikto/2.5.0"
    assert engine().assess(attempt(user_agent=scanner)).decision is Decision.DENY
    assessment = engine(settings).assess(attempt(user_agent=scanner))
    assert assessment.decision is Decision.STEP_UP
    assert assessment.score == 100


def test_weights_per_purpose_and_zero_switches_a_signal_off() -> None:
    profiles = dict(profiles_from(ZeroTrustSettings()))
    profiles[Purpose.SIGN_IN] = Profile(50, 100, weights={"user_agent": 2.0})
    profiles[Purpose.WAKE] = Profile(60, 100, weights={"user_agent": 0})
    zt = ZeroTrustEngine([UserAgentSignal()], profiles)
    doubled = zt.assess(attempt(user_agent=HEADLESS))
    assert (doubled.decision, doubled.score) == (Decision.STEP_UP, 80)
    assert doubled.findings[0].score == 80  # the findings carry the weighted score
    off = zt.assess(attempt(Purpose.WAKE, user_agent="sqlmap/1.8"))
    assert (off.decision, off.score, off.findings) == (Decision.ALLOW, 0, ())


def test_scores_add_up_across_signals_to_the_thresholds() -> None:
    zt = ZeroTrustEngine([Fixed("a", 30), Fixed("b", 25)], profiles_from(ZeroTrustSettings()))
    assessment = zt.assess(attempt())
    assert (assessment.decision, assessment.score) == (Decision.STEP_UP, 55)
    assert assessment.reasons == ("a: a found", "b: b found")
    assert zt.assess(attempt(Purpose.GRANT_ROLE)).decision is Decision.STEP_UP
    assert zt.assess(attempt(Purpose.REQUEST)).decision is Decision.ALLOW


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [
        (Purpose.SIGN_IN, Decision.STEP_UP),
        (Purpose.ADMIN, Decision.STEP_UP),
        (Purpose.REVEAL_SECRET, Decision.STEP_UP),
        (Purpose.REQUEST, Decision.ALLOW),
        (Purpose.WAKE, Decision.ALLOW),
    ],
)
def test_a_failing_signal_is_a_finding_never_an_exception(
    purpose: Purpose, expected: Decision, caplog: pytest.LogCaptureFixture
) -> None:
    zt = ZeroTrustEngine([Broken(), NetworkSignal()], profiles_from(ZeroTrustSettings()))
    assessment = zt.assess(attempt(purpose))
    assert assessment.decision is expected
    assert assessment.reasons == (
        f"broken: the signal failed (RuntimeError); counted as {expected}",
    )
    assert "zero-trust signal broken failed" in caplog.text
    # Its message (which may hold anything) is in the log for the admin, not in the reason.
    assert "database is down" not in assessment.reasons[0]


class Unreachable:
    name = "history"

    def weigh(self, attempt: Attempt) -> Finding | None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_an_unreachable_database_is_an_outage_not_a_finding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller answers it as every request during an outage (503, logged once): not one
    traceback per signal and request, and no decision made on the other signals alone."""
    zt = ZeroTrustEngine([Unreachable(), NetworkSignal()], profiles_from(ZeroTrustSettings()))
    with pytest.raises(OperationalError):
        zt.assess(attempt())
    assert "zero-trust signal history failed" not in caplog.text


def test_a_failing_signal_does_not_hide_a_deny_and_can_fail_closed() -> None:
    deny = AddressRanges.from_strings(["198.51.100.0/24"])
    profiles = dict(profiles_from(ZeroTrustSettings()))
    zt = ZeroTrustEngine([Broken(), NetworkSignal(deny=deny)], profiles)
    assert zt.assess(attempt(Purpose.REQUEST)).decision is Decision.DENY
    profiles[Purpose.SIGN_IN] = Profile(50, 100, on_signal_error=Decision.DENY)
    closed = ZeroTrustEngine([Broken()], profiles)
    assert closed.assess(attempt()).decision is Decision.DENY


def test_a_profile_weighing_an_unknown_signal_is_refused_at_build() -> None:
    settings = ZeroTrustSettings(weights={"usr_agent": 2})
    with pytest.raises(ValueError, match=r"weighs usr_agent, which no signal is named"):
        engine(settings)
    with pytest.raises(ValueError, match="two signals share a name"):
        ZeroTrustEngine([Fixed("a", 1), Fixed("a", 2)], profiles_from(ZeroTrustSettings()))


def test_the_settings_build_every_stateless_signal_and_the_allow_list_exempts(
    tmp_path: Path,
) -> None:
    tor = tmp_path / "tor.txt"
    tor.write_text("198.51.100.0/24\n")
    settings = ZeroTrustSettings(anonymiser_file=tor, allow_networks=["198.51.100.128/25"])
    zt = engine(settings)
    assert zt.signal_names == ("network", "place", "anonymiser", "user_agent", "headers")
    tor_exit = zt.assess(attempt(address="198.51.100.7"))
    assert tor_exit.decision is Decision.DENY
    assert tor_exit.reasons == ("anonymiser: the address is on the anonymiser list (Tor, VPN)",)
    # The admin's allow list: scored (60: a step-up at sign-in), not denied.
    vouched = zt.assess(attempt(address="198.51.100.200"))
    assert (vouched.decision, vouched.score) == (Decision.STEP_UP, 60)
