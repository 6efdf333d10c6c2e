"""The client: user agents (attack tools, scripts, headless and outdated browsers) and header
anomalies, with real user agents and the headers real browsers send."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from wakedock.config.zerotrust import MIN_BROWSER_VERSIONS
from wakedock.zerotrust.base import Attempt, Finding, Purpose
from wakedock.zerotrust.signals.client import HeaderSignal, UserAgentSignal

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.6 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID_DESKTOP_SITE = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# What Chrome 131 sends with a navigation over HTTPS.
CHROME_HEADERS = {
    "accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "accept-language": "en-GB,en;q=0.9",
    "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
    "sec-fetch-mode": "navigate",
    "sec-fetch-site": "none",
}
FIREFOX_HEADERS = {"accept": "text/html", "accept-language": "de", "sec-fetch-mode": "navigate"}
BEARER = {"authorization": "Bearer"}  # the wiring passes the scheme only


def attempt(user_agent: str, headers: Mapping[str, str] | None = None) -> Attempt:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return Attempt(Purpose.SIGN_IN, "198.51.100.7", at, user_agent=user_agent,
                   headers=headers if headers is not None else {})  # fmt: skip


def agent(user_agent: str, headers: Mapping[str, str] | None = None) -> Finding | None:
    return UserAgentSignal(MIN_BROWSER_VERSIONS).weigh(attempt(user_agent, headers))


def header(user_agent: str, headers: Mapping[str, str]) -> Finding | None:
    return HeaderSignal().weigh(attempt(user_agent, headers))


@pytest.mark.parametrize("user_agent", [CHROME, FIREFOX, SAFARI_IOS])
def test_current_browsers_are_not_found(user_agent: str) -> None:
    assert agent(user_agent) is None


@pytest.mark.parametrize(
    "user_agent",
    [
        "sqlmap/1.8#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/81.0 Nuclei",
        "Fuzz Faster U Fool v2.1.0-dev",
    ],
)
def test_attack_tools_score_a_deny_even_with_a_bearer_token(user_agent: str) -> None:
    for headers in ({}, BEARER):
        found = agent(user_agent, headers)
        assert found is not None and found.score == 100
        assert found.reason == "the user agent of an attack tool or scanner"


@pytest.mark.parametrize(
    "user_agent",
    ["curl/8.5.0", "python-requests/2.32.3", "Go-http-client/1.1", "Wget/1.21.4",
     "python-httpx/0.28.1", "okhttp/4.12.0", "Java/17.0.9"],
)  # fmt: skip
def test_http_libraries_are_scored_unless_they_are_api_clients(user_agent: str) -> None:
    found = agent(user_agent)
    assert found is not None and found.score == 20
    assert found.reason == "an HTTP library or command-line tool"
    assert agent(user_agent, BEARER) is None


@pytest.mark.parametrize(
    "user_agent",
    [
        CHROME.replace("Chrome/", "HeadlessChrome/"),
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
        "PhantomJS/2.1.1 Safari/538.1",
        CHROME + " Puppeteer",
        FIREFOX + " Playwright/1.49",
    ],
)
def test_headless_browsers_are_scored_api_client_or_not(user_agent: str) -> None:
    for headers in ({}, BEARER):
        found = agent(user_agent, headers)
        assert found is not None and found.score == 40
        assert found.reason == "a headless or automated browser"


@pytest.mark.parametrize(
    ("user_agent", "reason"),
    [
        ("Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)",
         "IE 10 is older than the oldest supported (12)"),
        ("Mozilla/5.0 (Windows NT 6.1; WOW64; rv:52.0) Gecko/20100101 Firefox/52.0",
         "Firefox 52 is older than the oldest supported (91)"),
        (CHROME.replace("131.0.0.0", "79.0.3945.88"),
         "Chrome 79 is older than the oldest supported (100)"),
    ],
)  # fmt: skip
def test_outdated_browsers_are_scored_by_their_family(user_agent: str, reason: str) -> None:
    assert agent(user_agent) == Finding("user_agent", 30, reason)
    assert agent(user_agent, BEARER) is None
    # The admin sets the oldest version per family; a family not listed is never too old.
    assert UserAgentSignal({"Chrome": 60}).weigh(attempt(user_agent)) is None


def test_no_user_agent_is_scored_except_for_an_api_client() -> None:
    assert agent("") == Finding("user_agent", 20, "no user agent")
    assert agent("   ", BEARER) is None


def test_real_browser_headers_are_not_anomalies() -> None:
    assert header(CHROME, CHROME_HEADERS) is None
    assert header(FIREFOX, FIREFOX_HEADERS) is None
    # Chrome over plain HTTP (no secure context): neither Fetch Metadata nor client hints.
    plain = {"accept": "text/html", "accept-language": "en"}
    assert header(CHROME, plain) is None
    # Chrome's "desktop site" on Android says Linux in the user agent, Android in the hint.
    android = {**CHROME_HEADERS, "sec-ch-ua-platform": '"Android"', "sec-ch-ua-mobile": "?1"}
    assert header(CHROME_ANDROID_DESKTOP_SITE, android) is None


def test_a_browser_user_agent_without_accept_headers() -> None:
    found = header(FIREFOX, {})
    assert found == Finding(
        "headers", 25,
        "a browser user agent without Accept; a browser user agent without Accept-Language",
    )  # fmt: skip


def test_chrome_with_fetch_metadata_but_no_client_hints_is_a_script_in_disguise() -> None:
    headers = {k: v for k, v in CHROME_HEADERS.items() if not k.startswith("sec-ch-ua")}
    assert header(CHROME, headers) == Finding(
        "headers", 20, "Chrome 131 sends Fetch Metadata but no client hints"
    )


def test_conflicting_hints_are_scored() -> None:
    as_linux = {**CHROME_HEADERS, "sec-ch-ua-platform": '"Linux"'}
    assert header(CHROME, as_linux) == Finding(
        "headers", 20, "the platform hint says Linux, the user agent Windows"
    )
    hinted_firefox = {**FIREFOX_HEADERS, "sec-ch-ua": '"Chromium";v="131"'}
    assert header(FIREFOX, hinted_firefox) == Finding(
        "headers", 20, "client hints from a Firefox user agent, which sends none"
    )


def test_forwarding_headers_from_an_untrusted_peer_and_the_cap() -> None:
    found = header("curl/8.5.0", {"via": "1.1 squid", "x-forwarded-for": "10.0.0.1"})
    assert found == Finding(
        "headers", 10, "via, x-forwarded-for from a proxy WakeDock does not trust"
    )
    # Every rule at once is still at most 40 points: hints, not proof.
    everything = {"via": "1.1 x", "sec-ch-ua": "x", "sec-ch-ua-platform": '"Windows"'}
    found = header(FIREFOX, everything)
    assert found is not None and found.score == 40


def test_an_api_client_is_not_held_to_browser_headers() -> None:
    assert header(CHROME, BEARER) is None


def test_an_overlong_user_agent_is_scored_and_parsed_only_in_part() -> None:
    """ua-parser would spend a third of a second on 8 KB; a browser sends ~200 characters."""
    found = agent(CHROME + " x" * 4000)
    assert found == Finding("user_agent", 20, "a user agent longer than 512 characters")
    # Padding does not hide a tool: the tool patterns read the whole user agent.
    found = agent("x" * 600 + " sqlmap/1.8")
    assert found is not None and found.score == 120
