"""Does password hashing stall the event loop? p99 of GET /api/v1/health, idle vs under logins.

Same server, production argon2id defaults (64 MiB, t=3, p=1). First wrk measures the p99 latency
of /api/v1/health on an otherwise idle server (the baseline), then again while a pool of
concurrent clients logs in continuously (right password: successful logins do not count
toward the rate limit) for the whole wrk run. If argon2 ran on the event loop, every health
request queued behind a hash would wait for it and the loaded p99 would explode.

All logins come from 127.0.0.1 for one user: the login rate limiter serialises them per
address and per username, so one argon2id hash runs at a time and the other clients queue,
each holding one of the server's worker threads. wrk and the server share the same CPUs.

    .venv/bin/python bench/login_latency.py [--seconds 10] [--logins 20] [--control]

--control replaces the logins by the same argon2id work done back to back in a separate
process (not the server): what the CPU contention alone costs, with no event loop involved.

Target: loaded p99 / idle p99 < 3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from common import (
    BENCH_USER,
    Server,
    argon2_parameters,
    code_line,
    create_user,
    login,
    machine_line,
    quiet_check,
    run_wrk,
    strong_password,
    wakedock_server,
)

TARGET = 3.0

# The control load: argon2id verifications back to back, in a process of its own.
_BURN = """
import sys, time
from argon2 import PasswordHasher, Type
m, t, p, seconds = (int(v) for v in sys.argv[1:5])
hasher = PasswordHasher(memory_cost=m, time_cost=t, parallelism=p, type=Type.ID)
stored = hasher.hash("control-password")
end, count = time.monotonic() + seconds, 0
while time.monotonic() < end:
    hasher.verify(stored, "control-password")
    count += 1
print(count)
"""


def control_load(parameters: str, seconds: int) -> subprocess.Popen[str]:
    """Start the argon2id control load (parameters like 'm=65536,t=3,p=4')."""
    cost = dict(part.split("=") for part in parameters.split(","))
    return subprocess.Popen(
        [sys.executable, "-c", _BURN, cost["m"], cost["t"], cost["p"], str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


class LoginLoad:
    """`workers` clients, each logging in back to back until stopped."""

    def __init__(self, server: Server, password: str, workers: int) -> None:
        self._server = server
        self._password = password
        self._workers = workers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.failed: dict[str, int] = {}
        # (finished at, took) of every successful login, perf_counter seconds.
        self.done: list[tuple[float, float]] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="login")

    def _client_loop(self) -> None:
        body = json.dumps({"username": BENCH_USER, "password": self._password})
        with httpx.Client(
            base_url=self._server.base_url, verify=self._server.ssl_context(), timeout=60
        ) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = client.post(
                        "/api/v1/auth/login",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    outcome = "ok" if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                finished = time.perf_counter()
                with self._lock:
                    if outcome == "ok":
                        self.done.append((finished, finished - started))
                    else:
                        self.failed[outcome] = self.failed.get(outcome, 0) + 1

    def __enter__(self) -> LoginLoad:
        self.futures = [self._pool.submit(self._client_loop) for _ in range(self._workers)]
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)
        for future in self.futures:
            future.result()  # re-raise anything unexpected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--logins", type=int, default=20, help="concurrent login clients")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (wrk's default)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--control",
        action="store_true",
        help="load with the same argon2id work in a separate process instead of logins",
    )
    args = parser.parse_args()

    print(f"machine: {machine_line()}")
    print(code_line())
    quiet_check()
    password = strong_password()
    with wakedock_server() as server:
        create_user(server, BENCH_USER, password, role="viewer")
        started = time.perf_counter()
        login(server, BENCH_USER, password)  # also warms the server up
        cost = argon2_parameters(server, BENCH_USER)
        print(
            f"one login (argon2id {cost}, idle server): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        url = f"{server.base_url}/api/v1/health"
        wrk_args = {
            "threads": args.threads,
            "connections": args.connections,
            "seconds": args.seconds,
        }
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency {url}")

        idle = run_wrk(url, **wrk_args)
        print(
            f"  idle:   {idle.rps:8.1f} req/s  p50 {idle.p50_ms:7.2f} ms  p99 {idle.p99_ms:7.2f} ms"
        )

        if args.control:
            burner = control_load(cost, args.seconds + 2)
            time.sleep(1.0)  # let the first hash start
            loaded = run_wrk(url, **wrk_args)
            hashes = burner.communicate(timeout=60)[0].strip()
            what = f"argon2id {cost} back to back in a separate process: {hashes} hashes"
        else:
            with LoginLoad(server, password, args.logins) as load:
                time.sleep(1.0)  # let every login client get its first request in flight
                window_start = time.perf_counter()
                loaded = run_wrk(url, **wrk_args)
                window_end = time.perf_counter()
            what = f"{args.logins} concurrent login clients"
        print(
            f"  loaded: {loaded.rps:8.1f} req/s  p50 {loaded.p50_ms:7.2f} ms  "
            f"p99 {loaded.p99_ms:7.2f} ms  ({what})"
        )

    for name, result in (("idle", idle), ("loaded", loaded)):
        if result.socket_errors:
            print(f"  ({name} run socket errors: {result.socket_errors})")
    if not args.control:
        report_logins(load, window_start, window_end)
    ratio = loaded.p99_ms / idle.p99_ms
    label = "under the control load" if args.control else "under logins"
    print(f"health p99 idle: {idle.p99_ms:.2f} ms, {label}: {loaded.p99_ms:.2f} ms")
    verdict = "meets" if ratio < TARGET else "MISSES"
    print(f"ratio loaded/idle p99: {ratio:.2f} ({verdict} the target < {TARGET:g})")
    return 0


def report_logins(load: LoginLoad, window_start: float, window_end: float) -> None:
    during = [took for at, took in load.done if window_start <= at <= window_end]
    window = window_end - window_start
    print(
        f"logins completed during the loaded wrk run: {len(during)} in {window:.1f} s "
        f"({len(during) / window:.1f}/s); {len(load.done)} in all"
        + (f", failed: {load.failed}" if load.failed else "")
    )
    if during:
        ordered = sorted(during)
        print(
            f"login latency under load (client side, queueing included): median "
            f"{ordered[len(ordered) // 2] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
        )


if __name__ == "__main__":
    raise SystemExit(main())
