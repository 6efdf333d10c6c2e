"""The short device names of the sessions list, from real User-Agent headers."""

from __future__ import annotations

import pytest

from wakedock.account.devices import describe_device


@pytest.mark.parametrize(
    ("agent", "shown"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            "Chrome 131 on Linux",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
            "Edge 131 on Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.5 Safari/605.1.15",
            "Safari 17 on macOS",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari 17 on iOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome 131 on Android",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox 128 on Linux",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36",
            "Chrome 131 on Linux",
        ),
        ("curl/8.5.0", "curl 8.5.0"),
        ("python-httpx/0.27.0", "python-httpx 0.27.0"),
        ("", "Unknown device"),
        ("   ", "Unknown device"),
        ("SomeAgent", "SomeAgent"),
    ],
)
def test_a_person_recognises_the_device(agent: str, shown: str) -> None:
    assert describe_device(agent) == shown


def test_an_unknown_long_header_is_cut_short() -> None:
    shown = describe_device("Mozilla/5.0 (compatible; " + "x" * 400 + ")")
    assert len(shown) == 60 and shown.endswith("\u2026")
