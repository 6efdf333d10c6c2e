"""The zero-trust engine on a replay of labelled sign-ins: false positives among legitimate
users and detections among attacks (the seed's KPI: false positives under 5%; issue #18's
goals: under 2%, and at least 95% of attack sign-ins stepped up or denied).

    .venv/bin/python bench/zerotrust_replay.py [--users 200] [--days 45] [--seed 7]
        [--max-speed-kmh 250]

Everything runs in process on a new SQLite database (migrated as WakeDock migrates it), with
the engine `build_engine` makes from the default settings (plus an anonymiser file listing the
replay's Tor exits), the behaviour and reputation signals included. Sign-ins are replayed in
time order as the login flow will: each is weighed; a sign-in with the right password that is
allowed, or stepped up and answered with the code (legitimate users only: an attacker holding a
password has no code), is remembered in the history; a wrong password is recorded as a failure.

The traffic, generated from `--seed`:
- legitimate users, each with a home city, one to three devices (current browsers with their
  real headers), working hours in their own zone, one to three sign-ins a working day from a
  few home and mobile addresses, an occasional mistyped password (then the right one), and for
  one user in eight a five-day trip abroad by plane in the middle of the period (no sign-in
  for a day after each flight);
- credential stuffing: botnet addresses in many countries, each trying a few of the real and
  made-up usernames with a forged browser user agent (half of them without the headers a
  browser sends);
- account takeover with the right password from another continent, minutes to hours after
  the user's own sign-in (impossible travel);
- Tor exit addresses, automation tools (curl, python-requests, Go) and scanners (sqlmap,
  nikto) on the sign-in form; a slow guess of one account from many addresses.

Places are given to the engine with coordinates, as a MaxMind City database would; the country
alone comes from the bundled database in production. A detection is a sign-in the engine did
not allow (step-up or deny); a false positive is a legitimate sign-in it did not allow.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from wakedock.auth.models import User
from wakedock.config import ZeroTrustSettings
from wakedock.db import make_engine, make_session_factory, migrate, transaction
from wakedock.zerotrust.base import Attempt, Decision, Place, Purpose
from wakedock.zerotrust.build import build_engine
from wakedock.zerotrust.history import SignInFailures, SignInHistory
from wakedock.zerotrust.signals.client import browser_of

START = datetime(2026, 9, 1, tzinfo=UTC)

# name: (country, latitude, longitude, zone, first octet of its addresses)
CITIES = {
    "Paris": ("FR", 48.857, 2.352, "Europe/Paris", 81),
    "Lyon": ("FR", 45.764, 4.836, "Europe/Paris", 90),
    "Berlin": ("DE", 52.520, 13.405, "Europe/Berlin", 87),
    "Madrid": ("ES", 40.417, -3.704, "Europe/Madrid", 83),
    "London": ("GB", 51.507, -0.128, "Europe/London", 86),
    "New York": ("US", 40.713, -74.006, "America/New_York", 24),
    "Chicago": ("US", 41.878, -87.630, "America/Chicago", 73),
    "Montreal": ("CA", 45.502, -73.567, "America/Toronto", 142),
    "Tokyo": ("JP", 35.676, 139.650, "Asia/Tokyo", 126),
    "Sao Paulo": ("BR", -23.551, -46.633, "America/Sao_Paulo", 177),
}
ABROAD = {
    "Lagos": ("NG", 6.524, 3.379, 105),
    "Hanoi": ("VN", 21.028, 105.854, 113),
    "Moscow": ("RU", 55.756, 37.617, 95),
    "Jakarta": ("ID", -6.208, 106.846, 36),
    "Lima": ("PE", -12.046, -77.043, 179),
    "Cairo": ("EG", 30.044, 31.236, 41),
}

CHROME = "Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 ({os}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{v}.0 Safari/605.1.15"
)
TOOLS = ["curl/8.5.0", "python-requests/2.32.3", "Go-http-client/1.1"]
SCANNERS = ["sqlmap/1.8#stable (https://sqlmap.org)", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None)"]


@dataclass(frozen=True)
class Device:
    user_agent: str
    headers: dict[str, str]


def browser(rng: random.Random) -> Device:
    """A current browser with the headers it really sends."""
    kind = rng.choice(["chrome-win", "chrome-mac", "firefox", "safari", "edge"])
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "accept-language": "en,fr;q=0.8"}
    if kind.startswith("chrome") or kind == "edge":
        os_ = (
            "Windows NT 10.0; Win64; x64"
            if kind != "chrome-mac"
            else "Macintosh; Intel Mac OS X 10_15_7"
        )
        version = rng.randint(126, 131)
        agent = CHROME.format(os=os_, v=version)
        brand = '"Chromium";v="{v}", "Google Chrome";v="{v}"'
        if kind == "edge":
            agent += f" Edg/{version}.0.0.0"
            brand = '"Chromium";v="{v}", "Microsoft Edge";v="{v}"'
        platform = '"Windows"' if kind != "chrome-mac" else '"macOS"'
        hints = {
            "sec-ch-ua": brand.format(v=version),
            "sec-ch-ua-mobile": "?0",
            "sec-ch-ua-platform": platform,
            "sec-fetch-site": "same-origin",
            "sec-fetch-mode": "navigate",
        }
        return Device(agent, {**html, **hints})
    if kind == "firefox":
        version = rng.randint(128, 133)
        return Device(
            FIREFOX.format(os="X11; Linux x86_64", v=version),
            {**html, "sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate"},
        )
    return Device(SAFARI.format(v=rng.randint(16, 18)), html)


def address(rng: random.Random, octet: int) -> str:
    return f"{octet}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def place(city: tuple[str, float, float, object, int] | tuple[str, float, float, int]) -> Place:
    return Place(country=city[0], latitude=city[1], longitude=city[2], accuracy_km=20)


@dataclass
class Person:
    username: str
    home: str
    devices: list[Device]
    addresses: list[str]
    start_hour: int
    user_id: int = 0
    trip: tuple[datetime, datetime, str] | None = None  # leaves, returns, city abroad
    last_seen: list[tuple[datetime, Place]] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    at: datetime
    label: str  # "legit", or the attack's kind
    username: str
    address: str
    place: Place
    device: Device
    password_ok: bool
    person: Person | None = None


def people(rng: random.Random, count: int, days: int) -> list[Person]:
    crowd = []
    for n in range(count):
        home = rng.choice(list(CITIES))
        octet = CITIES[home][4]
        person = Person(
            username=f"user{n:03d}",
            home=home,
            devices=[browser(rng) for _ in range(rng.randint(1, 3))],
            addresses=[address(rng, octet) for _ in range(rng.randint(1, 3))],
            start_hour=rng.randint(7, 10),
        )
        if n % 8 == 0:
            leaves = START + timedelta(days=days // 2, hours=rng.randint(6, 12))
            person.trip = (leaves, leaves + timedelta(days=5), rng.choice(list(ABROAD)))
        crowd.append(person)
    return crowd


def legit_events(rng: random.Random, crowd: list[Person], days: int) -> list[Event]:
    events = []
    for person in crowd:
        country, lat, lon, zone, octet = CITIES[person.home]
        for day in range(days):
            local = (START + timedelta(days=day)).astimezone(ZoneInfo(str(zone)))
            if local.weekday() >= 5 and rng.random() < 0.8:
                continue
            for _ in range(rng.randint(1, 3)):
                hour = person.start_hour + rng.randint(0, 9)
                at = local.replace(hour=hour, minute=rng.randint(0, 59)).astimezone(UTC)
                where, spot = place((country, lat, lon, octet)), rng.choice(person.addresses)
                if rng.random() < 0.05:  # a new address from the home ISP (dynamic IP, mobile)
                    spot = address(rng, octet)
                if person.trip and person.trip[0] <= at < person.trip[1] + timedelta(days=1):
                    # The flights: no sign-in for a day after leaving, nor after coming back.
                    if at < person.trip[0] + timedelta(days=1) or at >= person.trip[1]:
                        continue
                    abroad = ABROAD[person.trip[2]]
                    where, spot = place(abroad), address(rng, abroad[3])
                device = rng.choice(person.devices)
                if rng.random() < 0.04:  # a mistyped password first
                    events.append(
                        Event(
                            at - timedelta(seconds=20),
                            "legit",
                            person.username,
                            spot,
                            where,
                            device,
                            False,
                            person,
                        )
                    )
                events.append(
                    Event(at, "legit", person.username, spot, where, device, True, person)
                )
    return events


def attack_events(rng: random.Random, crowd: list[Person], days: int) -> list[Event]:
    events: list[Event] = []
    span = timedelta(days=days).total_seconds()

    def when() -> datetime:
        return START + timedelta(seconds=rng.uniform(span * 0.2, span))

    usernames = [p.username for p in crowd] + [f"admin{n}" for n in range(20)]
    # Credential stuffing: 60 bots, 5 to 30 tries each within minutes.
    for _ in range(60):
        city = rng.choice(list(ABROAD.values()) + [(*c[:3], c[4]) for c in CITIES.values()])
        bot, at, device = address(rng, city[-1]), when(), browser(rng)
        if rng.random() < 0.5:  # sloppy: a browser's user agent without its headers
            device = Device(device.user_agent, {"accept": "*/*"})
        for n in range(rng.randint(5, 30)):
            events.append(
                Event(
                    at + timedelta(seconds=20 * n),
                    "credential stuffing",
                    rng.choice(usernames),
                    bot,
                    place(city),
                    device,
                    False,
                )
            )
    # A slow guess of one account: 40 addresses, one try each, over a day.
    target, at = rng.choice(crowd).username, when()
    for n in range(40):
        city = rng.choice(list(ABROAD.values()))
        events.append(
            Event(
                at + timedelta(minutes=36 * n),
                "slow guessing",
                target,
                address(rng, city[-1]),
                place(city),
                browser(rng),
                False,
            )
        )
    # Account takeover with the right password from another continent, after the user's own
    # sign-in (scheduled against the legit events later: see `takeovers`).
    # Tor: 40 sign-ins from listed exits; tools and scanners: 40 each.
    for n in range(40):
        events.append(
            Event(
                when(),
                "tor",
                rng.choice(usernames),
                f"185.220.101.{n + 1}",
                Place(country="DE"),
                browser(rng),
                rng.random() < 0.3,
            )
        )
    for _ in range(40):
        tool = Device(rng.choice(TOOLS), {"accept": "*/*"})
        city = rng.choice(list(ABROAD.values()))
        events.append(
            Event(
                when(),
                "automation tool",
                rng.choice(usernames),
                address(rng, city[-1]),
                place(city),
                tool,
                False,
            )
        )
        scanner = Device(rng.choice(SCANNERS), {"accept": "*/*"})
        events.append(
            Event(
                when(),
                "scanner",
                rng.choice(usernames),
                address(rng, city[-1]),
                place(city),
                scanner,
                False,
            )
        )
    return events


def takeovers(rng: random.Random, legit: list[Event], count: int) -> list[Event]:
    """The right password, from far away, 10 minutes to 6 hours after a legitimate sign-in."""
    chosen = rng.sample(
        [e for e in legit if e.password_ok and e.at > START + timedelta(days=10)], count
    )
    events = []
    for own in chosen:
        city = rng.choice(list(ABROAD.values()))
        at = own.at + timedelta(minutes=rng.randint(10, 360))
        events.append(
            Event(
                at,
                "impossible travel",
                own.username,
                address(rng, city[-1]),
                place(city),
                browser(rng),
                True,
                own.person,
            )
        )
    return events


def replay(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="wd-zerotrust-bench-"))
    tor = workdir / "tor-exits.txt"
    tor.write_text("".join(f"185.220.101.{n}\n" for n in range(1, 256)))
    engine = make_engine(f"sqlite:///{workdir / 'wakedock.db'}")
    migrate(engine)
    factory = make_session_factory(engine)

    crowd = people(rng, args.users, args.days)
    now = datetime.now(UTC)
    with transaction(factory) as db:
        for person in crowd:
            user = User(
                username=person.username,
                role="viewer",
                password_hash="-",
                created_at=now,
                updated_at=now,
                password_changed_at=now,
            )
            db.add(user)
            db.flush()
            person.user_id = user.id
    ids = {p.username: p.user_id for p in crowd}

    settings = ZeroTrustSettings.model_validate(
        {"anonymiser_file": str(tor), "behaviour": {"max_speed_kmh": args.max_speed_kmh}}
    )
    zerotrust = build_engine(settings, factory=factory)
    history, failures = SignInHistory(factory), SignInFailures(factory)

    legit = legit_events(rng, crowd, args.days)
    events = sorted(
        legit + attack_events(rng, crowd, args.days) + takeovers(rng, legit, 60), key=lambda e: e.at
    )

    outcomes: dict[str, Counter[Decision]] = defaultdict(Counter)
    false_positive_reasons: Counter[str] = Counter()
    costs = []
    for event in events:
        attempt = Attempt(
            Purpose.SIGN_IN,
            event.address,
            event.at,
            user_agent=event.device.user_agent,
            headers=event.device.headers,
            username=event.username,
            user_id=ids.get(event.username),
            place=event.place,
        )
        began = time.perf_counter()
        assessment = zerotrust.assess(attempt)
        costs.append(time.perf_counter() - began)
        label = event.label if event.password_ok or event.label != "legit" else "legit (typo)"
        outcomes[label][assessment.decision] += 1
        if event.label == "legit" and assessment.decision is not Decision.ALLOW:
            for finding in assessment.findings:
                false_positive_reasons[finding.signal] += 1
        # Who gets in: the right password, and a decision the caller can meet. A person
        # answers a step-up with the code; an attacker holding only the password does not.
        signed_in = (
            event.password_ok
            and attempt.user_id is not None
            and (
                assessment.decision is Decision.ALLOW
                or (event.label == "legit" and assessment.decision is Decision.STEP_UP)
            )
        )
        if not event.password_ok:
            failures.record_failure(event.address, event.username, event.at)
        elif signed_in:
            history.remember(attempt, user_agent_family=browser_of(event.device.user_agent)[0])

    print(
        f"replay: {args.users} users, {args.days} days, seed {args.seed}, "
        f"max_speed_kmh {args.max_speed_kmh}; {len(events)} sign-ins"
    )
    print(
        f"engine cost per sign-in: median {statistics.median(costs) * 1e3:.2f} ms, "
        f"p99 {sorted(costs)[int(len(costs) * 0.99)] * 1e3:.2f} ms (SQLite, one thread)"
    )
    print("\n| traffic | sign-ins | allowed | stepped up | denied | not allowed |")
    print("|---|---|---|---|---|---|")
    attacks = Counter[Decision]()
    for label in sorted(outcomes, key=lambda name: (not name.startswith("legit"), name)):
        counts = outcomes[label]
        total = sum(counts.values())
        flagged = total - counts[Decision.ALLOW]
        if not label.startswith("legit"):
            attacks.update(counts)
        print(
            f"| {label} | {total} | {counts[Decision.ALLOW]} | {counts[Decision.STEP_UP]} | "
            f"{counts[Decision.DENY]} | {flagged / total:.1%} |"
        )
    legit_counts = outcomes["legit"]
    legit_total = sum(legit_counts.values())
    fp = (legit_total - legit_counts[Decision.ALLOW]) / legit_total
    detected = (sum(attacks.values()) - attacks[Decision.ALLOW]) / sum(attacks.values())
    print(
        f"\nfalse positives (legitimate sign-ins with the right password not allowed): {fp:.2%}"
        " (goal < 2%)"
    )
    print(f"attack sign-ins stepped up or denied: {detected:.1%} (goal >= 95%)")
    print("signals behind the false positives:", dict(false_positive_reasons.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-speed-kmh", type=float, default=250.0)
    replay(parser.parse_args())


if __name__ == "__main__":
    main()
