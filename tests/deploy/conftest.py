"""The production stack shared by tests/deploy/test_stack.py and test_stack_openbao.py: one stack
per session (bringing it up costs about a minute), with the OpenBao override, so that both the
stack and WakeDock's use of OpenBao in it are tested on the one run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.docker_images import docker_client, ensure_test_image
from support.stack import (
    ADMIN,
    ADMIN_PASSWORD,
    COMPOSE_FILE,
    OPENBAO_OVERRIDE,
    STACK_SERVICES,
    Stack,
    enrolled_admin,
    init_openbao,
    running_stack,
)
from support.stack_images import build_openbao_image, build_stack_images


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """deploy/compose.yaml with deploy/compose.openbao.yaml, brought up as docs/deploy.md says:
    the secret files, OpenBao alone, initialised and unsealed by scripts/stack-openbao-init.sh
    (its keys in `stack.openbao_keys`), then the rest."""
    engine = docker_client()
    images = build_stack_images(engine)
    openbao = build_openbao_image(engine, images)
    ensure_test_image(engine)  # the services' image: WakeDock never pulls
    keys_dir = tmp_path_factory.mktemp("wd-stack-keys") / "openbao"

    def openbao_first(stack: Stack) -> None:
        stack.openbao_keys = keys_dir
        stack.compose("up", "-d", "openbao")
        init_openbao(stack)

    with running_stack(
        engine,
        tmp_path_factory.mktemp("wd-stack-secrets"),
        prefix="wd-stack",
        images={**images.environment(), "OPENBAO_IMAGE": openbao},
        files=(COMPOSE_FILE, OPENBAO_OVERRIDE),
        services=len(STACK_SERVICES),
        before_up=openbao_first,
    ) as running:
        yield running


@pytest.fixture(scope="session")
def admin(stack: Stack) -> dict[str, str]:
    """The first admin's bearer header, signed in and MFA enrolled through the edge (the role
    may do nothing else before). Created by test_stack.py's first admin test when it runs
    first, else here."""
    return enrolled_admin(stack, ADMIN, ADMIN_PASSWORD)
