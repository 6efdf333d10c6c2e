"""Does a login reveal whether the username exists? Compare the time of failed logins.

Known user + wrong password versus unknown user, through the real LoginFlow (argon2id at the
production defaults: 64 MiB, t=3, p=1), interleaved so both see the same machine load. Prints the
median of each and their ratio (1.0 means no timing oracle). Run:

    .venv/bin/python bench/login_timing.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import InvalidCredentials
from wakedock.rbac.permissions import Role


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wd-timing-") as tmp:
        # Generous budgets: this measures verification cost, not the rate limiter.
        settings = load_settings(
            None,
            {
                "data_dir": Path(tmp),
                "rate_limit": {
                    "login_per_username": "100000/minute",
                    "login_per_ip": "100000/minute",
                },
            },
        )
        c = build_components(settings)
        with transaction(c.db) as db:
            c.users.create(
                db,
                RequestContext(actor="bench"),
                username="known-user",
                password="a sufficiently long bench passphrase 42",
                role=Role.VIEWER,
            )
        timings: dict[str, list[float]] = {"known user, wrong password": [], "unknown user": []}
        names = {"known user, wrong password": "known-user", "unknown user": "nobody-here"}
        context = RequestContext(ip="127.0.0.1", user_agent="bench")
        for _ in range(args.rounds):
            for label, username in names.items():
                started = time.perf_counter()
                with contextlib.suppress(InvalidCredentials):
                    c.login.login(username, "wrong password guess", context)
                timings[label].append(time.perf_counter() - started)
        medians = {label: statistics.median(values) for label, values in timings.items()}
        for label, value in medians.items():
            spread = statistics.quantiles(timings[label], n=10)
            print(
                f"{label:28s} median {value * 1000:7.1f} ms  p10 {spread[0] * 1000:6.1f} "
                f"p90 {spread[-1] * 1000:6.1f}  ({args.rounds} logins)"
            )
        ratio = medians["unknown user"] / medians["known user, wrong password"]
        print(f"ratio unknown/known: {ratio:.3f} (1.0 = indistinguishable)")


if __name__ == "__main__":
    main()
