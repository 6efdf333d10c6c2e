"""Webhook URLs that would reach the server's own network are refused (SSRF)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from conftest import Harness
from wakedock.alerts.ssrf import UnsafeWebhook, check_webhook

pytestmark = pytest.mark.security
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/latest", "metadata"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://169.254.10.1/hook", "link-local"),
        ("http://localhost:9000/hook", "loopback"),
        ("http://127.0.0.1/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),  # 127.0.0.1 written as one number
        ("http://0x7f000001/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://0.0.0.0/hook", "not a unicast"),
        ("http://224.0.0.1/hook", "not a unicast"),
        ("ftp://example.com/hook", "http"),
        ("https://user:pass@hooks.example.com/x", "credentials"),
        ("https://no-such-host.invalid/x", "does not resolve"),
    ],
)
def test_dangerous_webhooks_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeWebhook, match=reason):
        check_webhook(url, ())


def test_an_allowlisted_network_is_accepted_but_never_the_metadata_service() -> None:
    target = check_webhook("http://127.0.0.1:8080/hook?x=1", LOOPBACK)
    assert (target.address, target.port, target.path, target.query) == (
        "127.0.0.1",
        8080,
        "/hook",
        "x=1",
    )
    everything = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    with pytest.raises(UnsafeWebhook, match="metadata"):
        check_webhook("http://169.254.169.254/", everything)


def test_start_up_refuses_a_dangerous_webhook(make_harness: Callable[..., Harness]) -> None:
    with pytest.raises(ValueError, match=r"alerts\.webhooks: .*169\.254\.169\.254"):
        make_harness(alerts={"webhooks": ["http://169.254.169.254/latest"]})
