"""Section 5 on WakeDock's own stack: the socket proxy's read-only socket is the one accepted
exception (INFO with its reason); a writable socket, a second "proxy" or any other container
mounting the socket FAILs 5.32, and managed services never get the exception."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runtime.test_cis import hardened
from wakedock.runtime.cis_images import Verdict
from wakedock.runtime.cis_stack import check_managed_container, check_stack


def with_socket(name: str, *, proxy: bool, writable: bool = False) -> dict[str, Any]:
    attrs = copy.deepcopy(hardened())
    attrs["Name"] = f"/{name}"
    attrs["Mounts"] = [
        {
            "Type": "bind",
            "Source": "/var/run/docker.sock",
            "Destination": "/var/run/docker.sock",
            "RW": writable,
        }
    ]
    if proxy:
        attrs["Config"]["Labels"] = {"wakedock.role": "socket-proxy"}
    return attrs


def socket_verdict(findings: list[Any]) -> tuple[Verdict, str]:
    (found,) = [(f.verdict, f.reason) for f in findings if f.id == "5.32"]
    return found


@pytest.mark.security
def test_the_socket_proxy_is_an_accepted_exception_and_nothing_else_is() -> None:
    checked = dict(
        check_stack(
            [
                with_socket("proxy", proxy=True),
                with_socket("app", proxy=False),
                with_socket("second-proxy", proxy=True),
                hardened(),
            ]
        )
    )
    verdict, reason = socket_verdict(checked["proxy"])
    assert verdict is Verdict.INFO and reason.startswith("accepted exception")
    assert socket_verdict(checked["app"]) == (Verdict.FAIL, "the Docker socket is mounted")
    assert socket_verdict(checked["second-proxy"])[0] is Verdict.FAIL
    assert socket_verdict(checked["wakedock-app"])[0] is Verdict.PASS
    assert not [f for f in checked["proxy"] if f.verdict is Verdict.FAIL]


@pytest.mark.security
def test_a_proxy_with_a_writable_socket_fails() -> None:
    ((_, findings),) = check_stack([with_socket("proxy", proxy=True, writable=True)])
    verdict, reason = socket_verdict(findings)
    assert verdict is Verdict.FAIL and "writable at /var/run/docker.sock" in reason


@pytest.mark.security
def test_a_managed_service_labelled_as_the_proxy_still_fails() -> None:
    verdict, _ = socket_verdict(check_managed_container(with_socket("svc", proxy=True)))
    assert verdict is Verdict.FAIL
