"""Zero trust at sign-in, through the real server (`wakedock serve`, HTTPS), each attempt from
an address given in X-Forwarded-For by a trusted proxy (127.0.0.1, the test client: the only
peer whose header is believed, as in production behind the edge).

One server for the module, its settings as an admin would write them: a denied country (CN),
a Tor exit range in the anonymiser file, a city database (built here, as MaxMind's test
databases are) that places Paris and Sydney, and a habit zone in which it is 3 a.m. now. Each
test signs in its own users from its own addresses. What is refused is then read as an admin
would: `wakedock audit export --request-id <the reference on the refusal>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mmdb_writer import MmdbF64, MmdbU16, MMDBWriter
from netaddr import IPSet
from sqlalchemy import delete, text

from conftest import strong_password
from support.browser import enrol_by_api
from support.server import WakeDockProcess, run_cli, wakedock_server
from wakedock.db import make_engine, make_session_factory, transaction
from wakedock.zerotrust.models import SignInRecord

pytestmark = pytest.mark.integration

PARIS, SYDNEY, LONDON = "80.67.169.12", "1.1.1.1", "81.2.69.142"
CHINA = "1.2.4.8"  # the bundled country database places it in CN
TOR_EXIT = "185.220.101.7"
STUFFER = "81.2.69.200"  # London too: only its failures set it apart
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BROWSER_HEADERS = {"User-Agent": CHROME, "Accept": "text/html", "Accept-Language": "en"}
USERS = ("alice", "carol", "dora", "erin", "hana", "ivan")


@dataclass
class ZeroTrustServer:
    server: WakeDockProcess
    data: Path
    passwords: dict[str, str]

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url, verify=self.server.ssl_context(), timeout=30
        )

    def sign_in(
        self, address: str, username: str, password: str | None = None, **headers: str
    ) -> httpx.Response:
        sent = {**BROWSER_HEADERS, "X-Forwarded-For": address, **headers}
        with self.client() as client:
            return client.post(
                "/api/v1/auth/login",
                json={"username": username, "password": password or self.passwords[username]},
                headers=sent,
            )

    def events(self, **selection: str) -> list[dict[str, Any]]:
        args = [f"--{name.replace('_', '-')}={value}" for name, value in selection.items()]
        exported = run_cli(self.data, "audit", "export", *args)
        assert exported.returncode == 0, exported.stderr
        return [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]

    def decision_of(self, refused: httpx.Response) -> dict[str, Any]:
        """The zero-trust event behind a refusal, found by the reference it shows."""
        reference = refused.json()["reference"]
        assert reference in refused.json()["detail"]
        [event] = self.events(request_id=reference, type="zero_trust_decision")
        return event


def _city_database(path: Path) -> Path:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-City", languages=["en"])
    for network, country, latitude, longitude in (
        ("80.67.169.0/24", "FR", 48.8566, 2.3522),
        ("1.1.1.0/24", "AU", -33.8688, 151.2093),
        ("81.2.69.0/24", "GB", 51.5074, -0.1278),
    ):
        writer.insert_network(IPSet([network]), {
            "country": {"iso_code": country},
            "location": {"latitude": MmdbF64(latitude), "longitude": MmdbF64(longitude),
                         "accuracy_radius": MmdbU16(20)},
        })  # fmt: skip
    writer.to_db_file(str(path))
    return path


def _offset_where_it_is_3am(now: datetime) -> int:
    """Hours to add to UTC for a local time of 3 a.m. now (-12 to +11)."""
    return (3 - now.hour + 12) % 24 - 12


def _zone_where_it_is_3am(now: datetime) -> str:
    """An Etc/GMT zone whose local hour is 3 now (Etc/GMT-X is UTC+X: the sign is POSIX's)."""
    offset = _offset_where_it_is_3am(now)
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


def _daytime_habits(data: Path, username: str, now: datetime) -> None:
    """A month and a half of sign-ins from London between 09:00 and 17:00 in the habit zone,
    in place of whatever the user's history held."""
    zone_offset = _offset_where_it_is_3am(now)
    engine = make_engine(f"sqlite:///{data / 'wakedock.db'}")
    try:
        factory = make_session_factory(engine)
        with transaction(factory) as db:
            user_id = db.execute(
                text("SELECT id FROM users WHERE username = :u"), {"u": username}
            ).scalar_one()
            db.execute(delete(SignInRecord).where(SignInRecord.user_id == user_id))
            for day in range(45, 0, -1):
                for local_hour in (9, 13, 17):
                    local = (now - timedelta(days=day)).replace(hour=local_hour, minute=0)
                    db.add(SignInRecord(
                        user_id=user_id, address=LONDON, country="GB", latitude=51.5074,
                        longitude=-0.1278, accuracy_km=20, user_agent_family="Chrome",
                        at=local - timedelta(hours=zone_offset),
                    ))  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def zt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZeroTrustServer]:
    root = tmp_path_factory.mktemp("zerotrust")
    data = root / "data"
    passwords = {name: strong_password() for name in USERS}

    def create(name: str) -> None:
        created = run_cli(data, "user", "create", name, "--role", "viewer", "--password-stdin",
                          stdin=passwords[name] + "\n")  # fmt: skip
        assert created.returncode == 0, created.stderr

    create(USERS[0])  # the first one makes the database; the others in parallel
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(create, USERS[1:]))
    now = datetime.now(UTC)
    zone = _zone_where_it_is_3am(now)
    _daytime_habits(data, "dora", now)
    anonymisers = root / "tor-exits.txt"
    anonymisers.write_text("# Tor exit relays\n185.220.101.0/24\n")
    env = {
        "WAKEDOCK_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "WAKEDOCK_ZEROTRUST__DENY_COUNTRIES": '["CN"]',
        "WAKEDOCK_ZEROTRUST__ANONYMISER_FILE": str(anonymisers),
        "WAKEDOCK_ZEROTRUST__CITY_DATABASE": str(_city_database(root / "city.mmdb")),
        "WAKEDOCK_ZEROTRUST__BEHAVIOUR__HABIT_ZONE": zone,
        # The limiter would stop a stuffer at 10 tries; zero trust is what this module tests.
        "WAKEDOCK_RATE_LIMIT__LOGIN_PER_IP": "1000/15 minutes",
        "WAKEDOCK_RATE_LIMIT__LOGIN_PER_USERNAME": "1000/15 minutes",
    }
    with wakedock_server(data, env=env) as server:
        yield ZeroTrustServer(server, data, passwords)


def test_a_denied_country_is_refused_before_any_password_is_checked(zt: ZeroTrustServer) -> None:
    answers = [
        zt.sign_in(CHINA, "alice"),  # the right password
        zt.sign_in(CHINA, "alice", "not-her-password"),
        zt.sign_in(CHINA, "nobody-here", "whatever-it-is"),
    ]
    # One answer whoever asks and whatever the password: nothing is learnt from it.
    assert {(a.status_code, a.json()["code"]) for a in answers} == {(403, "zero_trust_denied")}
    assert {a.json()["detail"].split(" (reference")[0] for a in answers} == {
        "sign-in refused by the access policy"
    }
    event = zt.decision_of(answers[0])
    assert (event["ip"], event["outcome"], event["details"]["decision"]) == (
        CHINA, "denied", "deny")  # fmt: skip
    assert event["details"]["country"] == "CN"
    assert any("CN" in reason for reason in event["details"]["reasons"]), event
    # No password was checked: no sign-in failure from that address, and none counted.
    assert [e for e in zt.events(type="login_failure") if e["ip"] == CHINA] == []
    # The same person from Paris is let in.
    assert zt.sign_in(PARIS, "alice").status_code == 200


def test_a_tor_exit_is_denied(zt: ZeroTrustServer) -> None:
    refused = zt.sign_in(TOR_EXIT, "hana")
    assert (refused.status_code, refused.json()["code"]) == (403, "zero_trust_denied")
    event = zt.decision_of(refused)
    assert "anonymiser" in event["details"]["signals"], event


def test_an_address_failing_for_many_usernames_is_denied_for_the_others(
    zt: ZeroTrustServer,
) -> None:
    for n in range(20):
        failed = zt.sign_in(STUFFER, f"victim{n}", "Summer2026!")
        assert failed.status_code in {401, 403}, failed.text
    # Erin's own password, from the stuffer's address: refused before it is looked at.
    refused = zt.sign_in(STUFFER, "erin")
    assert (refused.status_code, refused.json()["code"]) == (403, "zero_trust_denied")
    event = zt.decision_of(refused)
    assert "address_reputation" in event["details"]["signals"], event
    # Erin from her own London address is fine.
    assert zt.sign_in(LONDON, "erin").status_code == 200


def test_a_headless_browser_is_scored_and_let_in(zt: ZeroTrustServer) -> None:
    headless = CHROME.replace("Chrome/", "HeadlessChrome/")
    answer = zt.sign_in(PARIS, "hana", **{"User-Agent": headless})
    assert answer.status_code == 200, answer.text
    [event] = zt.events(type="zero_trust_decision", request_id=answer.headers["x-request-id"])
    assert (event["details"]["decision"], event["outcome"]) == ("allow", "success")
    assert event["details"]["signals"]["user_agent"] == 40, event
    assert event["details"]["score"] >= 40


def test_a_jump_from_paris_to_sydney_within_minutes_is_stepped_up(zt: ZeroTrustServer) -> None:
    assert zt.sign_in(PARIS, "carol").status_code == 200
    # Without a second factor, the step-up cannot be answered: refused, and told why.
    refused = zt.sign_in(SYDNEY, "carol")
    assert (refused.status_code, refused.json()["code"]) == (403, "zero_trust_step_up")
    assert "second factor" in refused.json()["detail"]
    event = zt.decision_of(refused)
    assert event["details"]["decision"] == "step_up"
    assert {"impossible_travel", "new_country"} <= set(event["details"]["signals"]), event


def test_a_first_sign_in_at_3am_after_a_month_of_daytime_is_stepped_up_not_denied(
    zt: ZeroTrustServer,
) -> None:
    # Dora has no second factor: the step-up refuses her, and says what to do.
    refused = zt.sign_in(LONDON, "dora")
    assert (refused.status_code, refused.json()["code"]) == (403, "zero_trust_step_up")
    event = zt.decision_of(refused)
    assert event["details"]["decision"] == "step_up"
    assert list(event["details"]["signals"]) == ["unusual_hour"], event
    # Ivan, the same habits with an authenticator app (enrolled first: his enrolment's
    # sign-in is then replaced by the month of daytime): asked for his code, then let in.
    _secret, backup_codes = enrol_by_api(zt.server, "ivan", zt.passwords["ivan"])
    _daytime_habits(zt.data, "ivan", datetime.now(UTC))
    challenge = zt.sign_in(LONDON, "ivan")
    assert challenge.status_code == 200, challenge.text
    assert "challenge_token" in challenge.json()
    with zt.client() as client:
        done = client.post(
            "/api/v1/auth/mfa/verify",
            # A backup code: the enrolment just spent this 30 s window's TOTP code.
            json={"challenge_token": challenge.json()["challenge_token"],
                  "code": backup_codes[0]},
            headers={**BROWSER_HEADERS, "X-Forwarded-For": LONDON},
        )  # fmt: skip
    assert done.status_code == 200, done.text
    stepped = [e for e in zt.events(type="zero_trust_decision", actor="ivan")
               if e["details"]["decision"] == "step_up"]  # fmt: skip
    assert stepped and "unusual_hour" in stepped[-1]["details"]["signals"]
