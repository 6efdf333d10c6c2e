"""Several workers are refused where they would weaken the attempt budgets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from support.server import free_port, run_cli
from wakedock.config.sections import ServerSettings


def test_several_workers_on_an_in_memory_rate_limit_store_refuse_to_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    started = run_cli(
        data,
        "serve",
        "--port",
        str(free_port()),
        env={"WAKEDOCK_SERVER__WORKERS": "2"},
    )
    assert started.returncode != 0
    message = " ".join(started.stderr.split())
    assert "rate-limit store is in memory" in message
    assert "rate_limit.storage_url" in message and "server.workers: 1" in message


def test_workers_setting_takes_a_number_or_one_per_cpu() -> None:
    assert ServerSettings().worker_count() == 1
    assert ServerSettings(workers=3).worker_count() == 3
    assert ServerSettings(workers="auto").worker_count() == len(os.sched_getaffinity(0))
    for wrong in (0, -1, "many"):
        with pytest.raises(ValidationError):
            ServerSettings(workers=wrong)
