"""Does password hashing stall the event loop? p99 of GET /api/v1/health, idle vs under logins.

Same server, production argon2id defaults (64 MiB, t=3, p=4). First wrk measures the p99 latency
of /api/v1/health on an otherwise idle server (the baseline), then again while a pool of
concurrent clients logs in continuously (right password: successful logins do not count
toward the rate limit) for the whole wrk run. If argon2 ran on the event loop, every health
request queued behind a hash would wait for it and the loaded p99 would explode.

    .venv/bin/python bench/login_latency.py [--seconds 10] [--logins 20]

Target: loaded p99 / idle p99 < 3.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import (
    BENCH_USER,
    Server,
    create_user,
    login,
    machine_line,
    run_wrk,
    strong_password,
    wakedock_server,
)

TARGET = 3.0


class LoginLoad:
    """`workers` clients, each logging in back to back until stopped."""

    def __init__(self, server: Server, password: str, workers: int) -> None:
        self._server = server
        self._password = password
        self._workers = workers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.ok = 0
        self.failed: dict[str, int] = {}
        self.latencies: list[float] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="login")

    def _client_loop(self) -> None:
        body = json.dumps({"username": BENCH_USER, "password": self._password})
        with httpx.Client(base_url=self._server.base_url, verify=self._server.ssl_context(),
                          timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = client.post("/api/v1/auth/login", content=body,
                                           headers={"Content-Type": "application/json"})
                    outcome = "ok" if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                elapsed = time.perf_counter() - started
                with self._lock:
                    if outcome == "ok":
                        self.ok += 1
                        self.latencies.append(elapsed)
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
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()

    print(f"machine: {machine_line()}")
    password = strong_password()
    with wakedock_server() as server:
        create_user(server, BENCH_USER, password, role="viewer")
        started = time.perf_counter()
        login(server, BENCH_USER, password)  # also warms the server up
        print(f"one login (argon2id 64 MiB, t=3, p=4, idle server): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        url = f"{server.base_url}/api/v1/health"
        wrk_args = {"threads": 1, "connections": args.connections, "seconds": args.seconds}
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s --latency {url}")

        idle = run_wrk(url, **wrk_args)
        print(f"  idle:   {idle.rps:8.1f} req/s  p50 {idle.p50_ms:7.2f} ms  "
              f"p99 {idle.p99_ms:7.2f} ms")

        with LoginLoad(server, password, args.logins) as load:
            time.sleep(1.0)  # let every login client get its first request in flight
            loaded = run_wrk(url, **wrk_args)
        print(f"  loaded: {loaded.rps:8.1f} req/s  p50 {loaded.p50_ms:7.2f} ms  "
              f"p99 {loaded.p99_ms:7.2f} ms  ({args.logins} concurrent login clients)")

    seconds = args.seconds + 1.0
    print(f"logins completed: {load.ok} in ~{seconds:.0f} s ({load.ok / seconds:.1f}/s)"
          + (f", failed: {load.failed}" if load.failed else ""))
    if load.latencies:
        ordered = sorted(load.latencies)
        print(f"login latency under load: median {ordered[len(ordered) // 2] * 1000:.0f} ms, "
              f"max {ordered[-1] * 1000:.0f} ms")
    ratio = loaded.p99_ms / idle.p99_ms
    print(f"health p99 idle: {idle.p99_ms:.2f} ms, under logins: {loaded.p99_ms:.2f} ms")
    verdict = "meets" if ratio < TARGET else "MISSES"
    print(f"ratio loaded/idle p99: {ratio:.2f} ({verdict} the target < {TARGET:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
