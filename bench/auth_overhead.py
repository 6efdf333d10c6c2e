"""Cost of authentication per request: GET /api/v1/auth/me (bearer JWT) vs GET /api/v1/health.

Both endpoints are measured with wrk in the same run against the same server, alternating
(health, me, health, me), and the median of each is kept. The figure that matters is the
ratio me/health; an absolute requests/s depends on the machine.

    .venv/bin/python bench/auth_overhead.py [--seconds 15] [--rounds 2]

Target: me/health >= 0.6.
"""

from __future__ import annotations

import argparse

from common import (
    BENCH_USER,
    argon2_parameters,
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

TARGET = 0.6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=2, help="health+me pairs to run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    print(f"machine: {machine_line()}")
    print(code_line())
    quiet_check()
    password = strong_password()
    with wakedock_server() as server:
        create_user(server, BENCH_USER, password, role="viewer")
        token = login(server, BENCH_USER, password)
        print(f"argon2id cost of the stored hash: {argon2_parameters(server, BENCH_USER)}")
        status = get_status(server, "/api/v1/auth/me", token)
        if status != 200:
            raise SystemExit(f"GET /api/v1/auth/me answered {status} with the fresh token")
        health_url = f"{server.base_url}/api/v1/health"
        me_url = f"{server.base_url}/api/v1/auth/me"
        wrk_args = {
            "threads": args.threads,
            "connections": args.connections,
            "seconds": args.seconds,
        }
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency, "
            f"{args.rounds} rounds alternating health/me"
        )
        health_rps: list[float] = []
        me_rps: list[float] = []
        for round_no in range(1, args.rounds + 1):
            health = run_wrk(health_url, **wrk_args)
            health_rps.append(health.rps)
            print(
                f"  round {round_no} health: {health.rps:9.1f} req/s  "
                f"p50 {health.p50_ms:7.2f} ms  p99 {health.p99_ms:7.2f} ms"
            )
            me = run_wrk(me_url, headers={"Authorization": f"Bearer {token}"}, **wrk_args)
            me_rps.append(me.rps)
            print(
                f"  round {round_no} me:     {me.rps:9.1f} req/s  "
                f"p50 {me.p50_ms:7.2f} ms  p99 {me.p99_ms:7.2f} ms"
            )
            for result in (health, me):
                if result.socket_errors:
                    print(f"  (socket errors: {result.socket_errors})")

    health_median, me_median = median(health_rps), median(me_rps)
    ratio = me_median / health_median
    print(f"health (baseline) median: {health_median:9.1f} req/s")
    print(f"auth/me           median: {me_median:9.1f} req/s")
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio me/health: {ratio:.2f} ({verdict} the target >= {TARGET})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
