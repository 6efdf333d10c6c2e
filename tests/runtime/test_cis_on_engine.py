"""`wakedock cis-check` on the real engine: section 4 on two images built here (from the busybox
test image, no registry) and their Dockerfiles, and section 5 on the containers of a labelled
stack, where only the socket proxy may mount the (here fake) Docker socket, read-only."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from support.docker_images import TEST_IMAGE, docker_client, ensure_test_image
from support.server import run_cli

pytestmark = pytest.mark.integration

# Not a real credential: a value the 4.10 check must find by its name and never print.
FAKE_TOKEN_VALUE = "abc-not-a-real-token-4242"
BAD = f"""\
FROM {TEST_IMAGE}
ADD apt-get /usr/local/bin/apt-get
RUN apt-get update
ENV API_TOKEN={FAKE_TOKEN_VALUE}
ARG BUILD_TOKEN={FAKE_TOKEN_VALUE}
RUN test -n "$BUILD_TOKEN"
CMD ["sleep", "300"]
"""
GOOD = f"""\
FROM {TEST_IMAGE}
COPY apt-get /usr/local/bin/apt-get
RUN apt-get update && apt-get install -y nothing
ENV APP_MODE=production DB_PASSWORD_FILE=/run/secrets/db
USER 10001:10001
HEALTHCHECK --interval=30s CMD ["/bin/true"]
CMD ["sleep", "300"]
"""
# A stand-in package manager, so the RUN lines succeed in busybox.
FAKE_APT = "#!/bin/sh\nexit 0\n"


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker_client()
    ensure_test_image(client)
    return client


def _build(client: docker.DockerClient, root: Path, name: str, dockerfile: str) -> tuple[str, Path]:
    context = root / name
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    (context / "apt-get").write_text(FAKE_APT)
    (context / "apt-get").chmod(0o755)
    tag = f"wd-cis-{name}:{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"
    # docker-py drives the classic builder: its history lines are the legacy `#(nop)` form.
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    return tag, context / "Dockerfile"


@pytest.fixture(scope="module")
def images(
    engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, Path]]]:
    """The bad and the good image, with their Dockerfiles; removed after the module."""
    root = tmp_path_factory.mktemp("wd-cis-images")
    built = {
        name: _build(engine, root, name, text) for name, text in {"bad": BAD, "good": GOOD}.items()
    }
    yield built
    for tag, _ in built.values():
        engine.images.remove(tag, force=True)


def cis_json(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli(tmp_path / "data", "cis-check", *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    assert FAKE_TOKEN_VALUE not in done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def verdicts(target: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {f["id"]: (f["verdict"], f["reason"]) for f in target["findings"]}


def test_a_bad_image_fails_each_section_4_check_with_its_reason(
    tmp_path: Path, images: dict[str, tuple[str, Path]]
) -> None:
    tag, _ = images["bad"]
    status, report = cis_json(tmp_path, "--image", tag)
    assert status == 1 and report["failed"] is True
    found = verdicts(report["targets"][0])
    assert found["4.1"] == ("FAIL", "image: no USER, the container runs as root")
    assert found["4.6"] == ("FAIL", "image: no HEALTHCHECK")
    assert found["4.7"][0] == "FAIL" and "RUN apt-get update" in found["4.7"][1]
    assert found["4.9"][0] == "FAIL" and "in /usr/local/bin/apt-get" in found["4.9"][1]
    assert found["4.10"][0] == "FAIL" and "ENV API_TOKEN has a literal value" in found["4.10"][1]
    # The classic builder records a build argument used by a RUN in that RUN's history line.
    assert "build argument BUILD_TOKEN has a literal value" in found["4.10"][1]


def test_a_bad_dockerfile_fails_each_check_naming_the_line(
    tmp_path: Path, images: dict[str, tuple[str, Path]]
) -> None:
    done = run_cli(tmp_path / "data", "cis-check", "--dockerfile", str(images["bad"][1]))
    assert done.returncode == 1, done.stderr
    assert "[FAIL] 4.1   A user for the container has been created" in done.stdout
    assert "Dockerfile line 2: ADD of a local file (apt-get)" in done.stdout
    assert "Dockerfile line 3: RUN apt-get update" in done.stdout
    assert "Dockerfile line 4: ENV API_TOKEN has a literal value" in done.stdout
    assert FAKE_TOKEN_VALUE not in done.stdout


def test_a_good_image_and_its_dockerfile_pass_every_check(
    tmp_path: Path, images: dict[str, tuple[str, Path]]
) -> None:
    tag, dockerfile = images["good"]
    status, report = cis_json(tmp_path, "--image", tag, "--dockerfile", str(dockerfile))
    assert status == 0 and report["failed"] is False
    found = verdicts(report["targets"][0])
    assert set(found) == {"4.1", "4.6", "4.7", "4.9", "4.10"}
    assert {v for v, _ in found.values()} == {"PASS"}


def test_an_unknown_image_is_an_error_not_a_pass(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "data", "cis-check", "--image", "wd-cis-absent:none")
    assert done.returncode != 0 and "not found" in done.stderr


HARDENED: dict[str, Any] = {
    "cap_drop": ["ALL"],
    "read_only": True,
    "security_opt": ["no-new-privileges"],
    "mem_limit": "64m",
    "nano_cpus": 250_000_000,
    "pids_limit": 32,
    "init": True,
    "healthcheck": {"test": ["CMD", "true"], "interval": 30_000_000_000},
}


@pytest.fixture
def stack(engine: docker.DockerClient, tmp_path: Path) -> Iterator[str]:
    """A labelled stack: a hardened app, an unhardened one that mounts the (fake) socket, and a
    hardened socket proxy mounting it read-only. Removed after the test."""
    project = f"wd-cis-{secrets.token_hex(3)}"
    fake_socket = tmp_path / "docker.sock"
    fake_socket.write_text("")  # a plain file: nothing here can reach the engine through it
    socket_mount = {str(fake_socket): {"bind": "/var/run/docker.sock", "mode": "ro"}}
    network = engine.networks.create(f"{project}-net", driver="bridge")
    labels = {"com.docker.compose.project": project}
    made = []
    try:
        for name, extra in (
            ("app", {**HARDENED, "labels": labels}),
            ("loose", {"labels": labels, "volumes": socket_mount}),
            (
                "socket-proxy",
                {
                    **HARDENED,
                    "labels": {**labels, "wakedock.role": "socket-proxy"},
                    "volumes": socket_mount,
                },
            ),
        ):
            made.append(
                engine.containers.run(
                    TEST_IMAGE,
                    ["sleep", "300"],
                    name=f"{project}-{name}",
                    network=network.name,
                    detach=True,
                    **extra,
                )
            )
        yield project
    finally:
        for container in made:
            container.remove(force=True)
        network.remove()


def test_a_stack_is_checked_with_the_socket_proxy_as_its_one_exception(
    tmp_path: Path, stack: str
) -> None:
    status, report = cis_json(tmp_path, "--project", stack)
    assert status == 1
    by_name = {t["name"]: verdicts(t) for t in report["targets"]}
    assert set(by_name) == {f"{stack}: {stack}-{n}" for n in ("app", "loose", "socket-proxy")}
    app = by_name[f"{stack}: {stack}-app"]
    loose = by_name[f"{stack}: {stack}-loose"]
    proxy = by_name[f"{stack}: {stack}-socket-proxy"]
    assert not [i for i, (v, _) in app.items() if v == "FAIL"]
    assert loose["5.4"][0] == "FAIL" and loose["5.13"][0] == "FAIL"
    assert loose["5.32"] == ("FAIL", "the Docker socket is mounted")
    assert proxy["5.32"][0] == "INFO" and "accepted exception" in proxy["5.32"][1]
    assert not [i for i, (v, _) in proxy.items() if v == "FAIL"]


def test_a_project_without_containers_is_an_error(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "data", "cis-check", "--project", "wd-cis-none-here")
    assert done.returncode != 0 and "no container carries" in done.stderr
