"""Requests/s of `wakedock serve` on each HTTP parser: h11 (pure Python) vs httptools (C).

Two servers run side by side, one per `server.http_parser`, and wrk measures GET
/api/v1/health over TLS 1.3 on each in turn (h11, httptools, h11, httptools, ...); the median of
each is kept and the figure that matters is the ratio httptools/h11, from the same run.

    .venv/bin/python bench/server_parser.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse

from common import median, preamble, run_wrk, wakedock_server

PARSERS = ("h11", "httptools")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per parser, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    preamble()
    env = {name: {"WAKEDOCK_SERVER__HTTP_PARSER": name} for name in PARSERS}
    with wakedock_server(env["h11"]) as h11, wakedock_server(env["httptools"]) as fast:
        servers = {"h11": h11, "httptools": fast}
        for name, server in servers.items():
            if f"HTTP/1.1 parser {name}" not in server.log():
                raise SystemExit(f"the {name} server does not say it runs {name}")
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency "
            f"GET /api/v1/health (TLS 1.3), {args.rounds} rounds interleaved"
        )
        rps: dict[str, list[float]] = {name: [] for name in PARSERS}
        for round_no in range(1, args.rounds + 1):
            for name in PARSERS:
                result = run_wrk(
                    f"{servers[name].base_url}/api/v1/health",
                    threads=args.threads,
                    connections=args.connections,
                    seconds=args.seconds,
                )
                rps[name].append(result.rps)
                errors = f"  socket errors: {result.socket_errors}" if result.socket_errors else ""
                print(
                    f"  round {round_no} {name:9}: {result.rps:9.1f} req/s  "
                    f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms{errors}"
                )
    medians = {name: median(values) for name, values in rps.items()}
    for name in PARSERS:
        print(f"{name:9} median: {medians[name]:9.1f} req/s")
    print(f"ratio httptools/h11: {medians['httptools'] / medians['h11']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
