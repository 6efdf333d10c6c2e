"""What a stop costs `wakedock serve` without an edge, now that direct routes are on by default
(`edge.direct_routes: auto`) against `false` (no direct routes, as before): same database kind,
same run, interleaved rounds.

    PYTHONPATH=src .venv/bin/python bench/stop_grace.py [--stops 200] [--rounds 5]

Each stop goes through `ServiceManager.stop` (lock, rows, audit event) against the tests' fake
runtime, so the figure is WakeDock's own bookkeeping: under `auto` a stop also stores the
service as `stopping` and reads the edges' registrations (none here), and waits no grace. A
real `docker stop` adds hundreds of milliseconds to both. Prints the median time per stop of
each and their ratio per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.fake_runtime import FakeRuntime
from wakedock.components import build_components
from wakedock.config import load_settings
from wakedock.context import RequestContext
from wakedock.rbac.permissions import Role
from wakedock.services.snapshots import Actor
from wakedock.services.spec import ServiceSpec

ADMIN = Actor("bench", Role.ADMIN)
CONTEXT = RequestContext(actor="bench")


def installation(root: Path, mode: str) -> object:
    settings = load_settings(
        None,
        {
            "data_dir": root / mode,
            "edge": {"direct_routes": mode, "stop_grace_seconds": 60},
        },
    )
    components = build_components(settings, runtime=FakeRuntime())
    spec = ServiceSpec.model_validate(
        {
            "name": "app",
            "image": "wakedock-test/busybox:1",
            "readiness": {"type": "tcp", "port": 80},
        }
    )
    components.services.create(ADMIN, spec, CONTEXT, owner_id=None)
    return components


def per_stop_ms(components: object, stops: int) -> float:
    services = components.services  # type: ignore[attr-defined]
    total = 0.0
    for _ in range(stops):
        services.start(ADMIN, "app", CONTEXT)
        started = time.perf_counter()
        services.stop(ADMIN, "app", CONTEXT)
        total += time.perf_counter() - started
    return total / stops * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        before = installation(Path(root), "false")
        auto = installation(Path(root), "auto")
        per_stop_ms(before, 20)  # warm both
        per_stop_ms(auto, 20)
        results: dict[str, list[float]] = {"false": [], "auto": []}
        ratios = []
        for round_ in range(args.rounds):
            off = per_stop_ms(before, args.stops)
            on = per_stop_ms(auto, args.stops)
            results["false"].append(off)
            results["auto"].append(on)
            ratios.append(on / off)
            print(f"round {round_ + 1}: false {off:.2f} ms, auto (no edge) {on:.2f} ms per stop")
        med_off = statistics.median(results["false"])
        med_on = statistics.median(results["auto"])
        print(
            f"median per stop: false {med_off:.2f} ms, auto without an edge {med_on:.2f} ms "
            f"(+{med_on - med_off:.2f} ms), ratio {statistics.median(ratios):.2f}x"
        )


if __name__ == "__main__":
    main()
