"""A spec becomes a Launch only through the launch policy, with its secrets resolved, and its
readiness probe an engine healthcheck that a user's path cannot break out of."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wakedock.runtime.launch import Mount, MountKind
from wakedock.services.launch import healthcheck, launch_of
from wakedock.services.policy import PolicySettings
from wakedock.services.spec import HttpProbe, ServiceSpec


def make_spec(**overrides: Any) -> ServiceSpec:
    data: dict[str, Any] = {
        "name": "web",
        "image": "wakedock/test-app:1",
        "readiness": {"type": "http", "path": "/health", "port": 8080},
    }
    data.update(overrides)
    return ServiceSpec.model_validate(data)


def run_with_fake_wget(command: str, tmp_path: Path) -> list[str]:
    """Run the healthcheck shell line with a `wget` that records its argv, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv"
    fake = bin_dir / "wget"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_file}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    shell = shutil.which("sh")
    assert shell is not None
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    subprocess.run([shell, "-c", command], cwd=tmp_path, env=env, check=True, timeout=10)
    return argv_file.read_text().splitlines()


@pytest.mark.parametrize(
    "path",
    [
        "/health;touch${IFS}pwned",  # accepted by spec validation: must stay inert when quoted
        "/x'$(touch${IFS}pwned)'",
        "/health; rm -rf /; touch pwned",  # refused by validation; quoted even if it got through
    ],
)
def test_http_path_cannot_inject(path: str, tmp_path: Path) -> None:
    spec = make_spec().model_copy(
        update={"readiness": HttpProbe.model_construct(type="http", path=path, port=8080)}
    )
    check = healthcheck(spec)
    argv = run_with_fake_wget(check.test[1], tmp_path)
    assert argv == ["-q", "-O", "/dev/null", f"http://127.0.0.1:8080{path}"]
    assert not (tmp_path / "pwned").exists()


def test_spec_with_violations_refused() -> None:
    with pytest.raises(ValueError, match="privileged"):
        launch_of(make_spec(privileged=True))
    with pytest.raises(ValueError, match="host"):
        launch_of(make_spec(network_mode="host"))
    with pytest.raises(ValueError, match="not allowed"):
        launch_of(make_spec(cap_add=["SYS_ADMIN"]))


def test_unresolved_secret_reference_refused() -> None:
    spec = make_spec(env={"MODE": "prod", "TOKEN": "secret:apps/web#token"})
    with pytest.raises(ValueError, match="TOKEN"):
        launch_of(spec)
    resolved = {"MODE": "prod", "TOKEN": "s3cr3t"}
    assert launch_of(spec, resolved).environment == resolved
    # A caller that hands the references over unresolved is refused too (Engine and Swarm).
    with pytest.raises(ValueError, match="TOKEN"):
        launch_of(spec, dict(spec.env))


def test_resolved_secrets_never_shown_in_a_repr() -> None:
    launch = launch_of(make_spec(), {"TOKEN": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(launch)


def test_mounts_keep_the_names_the_service_gives() -> None:
    spec = make_spec(
        volumes=[
            {"name": "data", "target": "/data"},
            {"source": "/srv/wakedock/web", "target": "/srv", "read_only": True},
        ]
    )
    launch = launch_of(spec, policy=PolicySettings(bind_mount_allowlist=("/srv/wakedock",)))
    assert launch.mounts == (
        Mount(MountKind.VOLUME, "data", "/data", read_only=False),
        Mount(MountKind.BIND, "/srv/wakedock/web", "/srv", read_only=True),
    )
