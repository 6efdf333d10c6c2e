"""Cost of zero trust on authenticated requests: GET /api/v1/auth/me with the engine on
against the same server with `zerotrust.enabled: false`.

Two servers side by side (production defaults otherwise), each trusting 127.0.0.1 as its
proxy; every request says it comes from a public address (X-Forwarded-For, placed by the
bundled country database) with a desktop Chrome user agent, as through the edge. wrk runs
alternately against each (off, on, off, on, ...) and the median of each is kept; the figure
that matters is the ratio on/off (absolute requests/s depend on the machine).

    .venv/bin/python bench/zerotrust_cost.py [--seconds 15] [--rounds 3]

Target (issue #18): on/off >= 0.9.
"""

from __future__ import annotations

import argparse
import contextlib

from common import (
    BENCH_USER,
    code_line,
    create_user,
    get_status,
    login,
    machine_line,
    median,
    quiet_check,
    run_wrk,
    strong_password,
    wakedock_server,
)

TARGET = 0.9
ADDRESS = "80.67.169.12"  # a public address in FR
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3, help="off+on pairs to run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    print(f"machine: {machine_line()}")
    print(code_line())
    quiet_check()
    trusted = {"WAKEDOCK_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]'}
    with contextlib.ExitStack() as stack:
        servers = {
            "off": stack.enter_context(
                wakedock_server({**trusted, "WAKEDOCK_ZEROTRUST__ENABLED": "false"})
            ),
            "on": stack.enter_context(wakedock_server(trusted)),
        }
        tokens = {}
        for name, server in servers.items():
            password = strong_password()
            create_user(server, BENCH_USER, password, role="viewer")
            tokens[name] = login(server, BENCH_USER, password)
            status = get_status(server, "/api/v1/auth/me", tokens[name])
            if status != 200:
                raise SystemExit(f"GET /api/v1/auth/me answered {status} on the {name} server")
        wrk_args = {
            "threads": args.threads,
            "connections": args.connections,
            "seconds": args.seconds,
        }
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency, "
            f"{args.rounds} rounds alternating off/on, X-Forwarded-For {ADDRESS}, Chrome 131"
        )
        rps: dict[str, list[float]] = {"off": [], "on": []}
        for round_no in range(1, args.rounds + 1):
            for name, server in servers.items():
                headers = {
                    "Authorization": f"Bearer {tokens[name]}",
                    "X-Forwarded-For": ADDRESS,
                    "User-Agent": CHROME,
                    "Accept": "application/json",
                    "Accept-Language": "fr",
                }
                result = run_wrk(f"{server.base_url}/api/v1/auth/me", headers=headers, **wrk_args)
                rps[name].append(result.rps)
                print(
                    f"  round {round_no} {name:3}: {result.rps:9.1f} req/s  "
                    f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    + (f"  socket errors: {result.socket_errors}" if result.socket_errors else "")
                )
                if result.non_2xx:
                    raise SystemExit(f"{result.non_2xx} answers were not 2xx on the {name} server")

    off, on = median(rps["off"]), median(rps["on"])
    ratio = on / off
    print(f"engine off median: {off:9.1f} req/s")
    print(f"engine on  median: {on:9.1f} req/s")
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio on/off: {ratio:.2f} ({verdict} the target >= {TARGET})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
