"""How long a sign-in from a denied country takes, whoever asks and whatever the password
(issue #18: "a denied country is refused before any password check: the timing of a refused
and an accepted user is the same").

One server with the production defaults (argon2 at its production cost) and
`zerotrust.deny_countries: [CN]`, trusting 127.0.0.1 as its proxy. Interleaved rounds, one
sign-in of each kind per round, sequential (nothing else runs):

- from CN (denied): a real user with her right password, with a wrong one, a name with no
  account;
- from FR (weighed, then the password checked): the real user with her right password, and a
  name with no account (WakeDock checks a dummy hash so that it takes as long).

Medians in ms. What should hold: the three CN kinds are the same (within the noise of a few
ms) and far below the FR ones, whose cost is the argon2 check a denied network never reaches.

    .venv/bin/python bench/zerotrust_refusal_timing.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import time

import httpx

from common import (
    code_line,
    create_user,
    machine_line,
    median,
    quiet_check,
    strong_password,
    wakedock_server,
)

CHINA = "1.2.4.8"  # a public address the bundled database places in CN
HOME = "80.67.169.12"  # her usual address, in FR
# Public addresses in FR and names, one per failed attempt: no rate limit is reached.
FRANCE = "80.67.169.{n}"
USER = "alice"
# A desktop browser, as through the edge (the client signals do not step her up).
BROWSER = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "Accept": "application/json",
    "Accept-Language": "fr",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    print(code_line())
    quiet_check()
    env = {
        "WAKEDOCK_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "WAKEDOCK_ZEROTRUST__DENY_COUNTRIES": '["CN"]',
    }
    with wakedock_server(env) as server:
        password = strong_password()
        create_user(server, USER, password, role="viewer")
        kinds = {
            "CN, her right password": (CHINA, USER, password, 403),
            "CN, a wrong password": (CHINA, USER, strong_password(), 403),
            "CN, no such account": (CHINA, "nobody-{n}", password, 403),
            "FR, her right password": (HOME, USER, password, 200),
            "FR, no such account": (FRANCE, "nobody-{n}", password, 401),
        }
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        with httpx.Client(
            base_url=server.base_url, verify=server.ssl_context(), timeout=60
        ) as http:
            for n in range(args.rounds + 1):  # round 0 warms up, not counted
                for kind, (address, name, secret, expected) in kinds.items():
                    started = time.perf_counter()
                    answer = http.post(
                        "/api/v1/auth/login",
                        json={"username": name.format(n=n), "password": secret},
                        headers={**BROWSER, "X-Forwarded-For": address.format(n=n % 250 + 1)},
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    if answer.status_code != expected:
                        raise SystemExit(f"{kind}: {answer.status_code} {answer.text}")
                    if n:
                        times[kind].append(elapsed)
    print(f"{args.rounds} rounds, one sign-in of each kind per round, sequential; median ms:")
    for kind, values in times.items():
        print(f"  {kind:24} {median(values):8.1f}  (min {min(values):.1f}, max {max(values):.1f})")
    denied = [median(times[k]) for k in kinds if k.startswith("CN")]
    print(f"denied kinds: spread {max(denied) - min(denied):.1f} ms between their medians")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
