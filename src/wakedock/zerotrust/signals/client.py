"""The client: what its user agent says it is (`UserAgentSignal`) and whether its headers agree
(`HeaderSignal`). Both are cheap hints, easily forged by a careful attacker: they catch the
careless majority (scanners, scripts run against a sign-in form, headless browsers) and are
scored, never decisive; the thresholds and the other signals decide.

An API client (a request with an `Authorization: Bearer` header; the wiring passes only the
scheme, never the token) is a script by design: the automation, old-browser and header rules
do not apply to it; the attack-tool and headless rules still do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from ua_parser import parse

from wakedock.zerotrust.base import Attempt, Finding

ATTACK_TOOL_SCORE = 100.0
HEADLESS_SCORE = 40.0
OLD_BROWSER_SCORE = 30.0
AUTOMATION_SCORE = 20.0
NO_USER_AGENT_SCORE = 20.0
OVERLONG_SCORE = 20.0
# ua-parser's rules cost ~20 ms on 512 characters and ~350 ms on 8 KB: only this much is parsed
# (this module's own patterns are linear and read it all). Real user agents are well under it
# (a browser's is ~120-250 characters).
MAX_USER_AGENT = 512
# Header anomalies add up, but never beyond this: each rule is a hint, and a strange but honest
# browser must not be denied by them alone.
HEADERS_CAP = 40.0

# Scanners and attack tools (their default user agents): nobody signs in with them.
ATTACK_TOOLS = re.compile(
    r"sqlmap|nikto|nmap|masscan|zgrab|nuclei|wpscan|dirbuster|gobuster|feroxbuster|\bffuf\b|"
    r"fuzz faster u fool|hydra|acunetix|netsparker|\bw3af\b|zmeu|havij|jorgee|openvas|commix|"
    r"wfuzz|arachni",
    re.IGNORECASE,
)
# HTTP libraries and command-line tools: legitimate for an API client, odd for a person.
AUTOMATION_TOOLS = re.compile(
    r"\b(curl|wget|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|okhttp|"
    r"java|apache-httpclient|libwww-perl|powershell|node-fetch|axios|undici|scrapy|httpie|"
    r"guzzlehttp|reqwest|postmanruntime|insomnia)/",
    re.IGNORECASE,
)
# Headless browsers and the automation frameworks that say so in the user agent.
HEADLESS = re.compile(r"headless|phantomjs|slimerjs|puppeteer|playwright|selenium|webdriver",
                      re.IGNORECASE)  # fmt: skip

BROWSERS = frozenset({
    "Chrome", "Chrome Mobile", "Chrome Mobile iOS", "Chromium", "Edge", "Edge Mobile", "Opera",
    "Firefox", "Firefox Mobile", "Firefox iOS", "Safari", "Mobile Safari", "Samsung Internet",
    "IE", "Brave", "Vivaldi", "Yandex Browser",
})  # fmt: skip
# Chromium browsers send User-Agent Client Hints (sec-ch-ua) by default since Chrome 89; Firefox
# and Safari never do.
CHROMIUM = frozenset({"Chrome", "Chrome Mobile", "Chromium", "Edge", "Opera", "Brave", "Vivaldi",
                      "Samsung Internet", "Yandex Browser"})  # fmt: skip
NO_CLIENT_HINTS = frozenset({"Firefox", "Firefox Mobile", "Safari", "Mobile Safari"})
# sec-ch-ua-platform -> the OS family ua-parser reads from the user agent.
PLATFORMS = {"Windows": "Windows", "macOS": "Mac OS X", "Linux": "Linux", "Android": "Android",
             "iOS": "iOS", "Chrome OS": "Chrome OS"}  # fmt: skip
FORWARDING_HEADERS = ("via", "forwarded", "x-forwarded-for")


def browser_of(user_agent: str) -> tuple[str | None, int | None, str | None]:
    """(family, major version, OS family) of a user agent (its first MAX_USER_AGENT
    characters)."""
    return _browser_of(user_agent[:MAX_USER_AGENT])


@lru_cache(maxsize=4096)
def _browser_of(user_agent: str) -> tuple[str | None, int | None, str | None]:
    # ua-parser's rules are slow (milliseconds), and the same few user agents come back all
    # day, hence the cache.
    result = parse(user_agent)
    agent, system = result.user_agent, result.os
    family = agent.family if agent is not None else None
    digits = agent.major if agent is not None else None
    major = int(digits) if digits and digits.isdigit() else None
    return family, major, system.family if system is not None else None


def is_api_client(headers: Mapping[str, str]) -> bool:
    return headers.get("authorization", "").split(" ", 1)[0].lower() == "bearer"


class UserAgentSignal:
    name = "user_agent"

    def __init__(self, min_versions: Mapping[str, int] | None = None) -> None:
        # Browser family (as ua-parser names it) -> the oldest major version still accepted.
        self._min_versions = dict(min_versions or {})

    def weigh(self, attempt: Attempt) -> Finding | None:
        agent = attempt.user_agent.strip()
        api = is_api_client(attempt.headers)
        found: list[tuple[float, str]] = []
        if len(agent) > MAX_USER_AGENT:
            found.append((OVERLONG_SCORE, f"a user agent longer than {MAX_USER_AGENT} characters"))
        if not agent:
            if not api:
                found.append((NO_USER_AGENT_SCORE, "no user agent"))
        elif ATTACK_TOOLS.search(agent):
            found.append((ATTACK_TOOL_SCORE, "the user agent of an attack tool or scanner"))
        else:
            if HEADLESS.search(agent):
                found.append((HEADLESS_SCORE, "a headless or automated browser"))
            elif not api and AUTOMATION_TOOLS.search(agent):
                found.append((AUTOMATION_SCORE, "an HTTP library or command-line tool"))
            if not api:
                old = self._too_old(agent)
                if old:
                    found.append((OLD_BROWSER_SCORE, old))
        if not found:
            return None
        return Finding(self.name, sum(score for score, _ in found),
                       "; ".join(reason for _, reason in found))  # fmt: skip

    def _too_old(self, agent: str) -> str | None:
        family, major, _ = browser_of(agent)
        oldest = self._min_versions.get(family or "")
        if oldest is None or major is None or major >= oldest:
            return None
        return f"{family} {major} is older than the oldest supported ({oldest})"


class HeaderSignal:
    """Header anomalies, each rule one that real browsers do not trip:
    - a browser always sends Accept, and Accept-Language, on navigations and fetches;
    - a Chromium browser that sends Fetch Metadata (sec-fetch-mode: so a secure context, where
      it also sends client hints) but no sec-ch-ua is a script wearing Chrome's user agent;
    - client hints from a Firefox or Safari user agent, or a platform hint that contradicts the
      user agent's OS (Android and Linux excepted: Chrome's "desktop site" on Android says
      Linux in the user agent) are two stories at once;
    - Via, Forwarded or X-Forwarded-For reaching the engine: the wiring passes them only when
      the direct peer is not a trusted proxy, so the client came through a proxy WakeDock
      does not know (an open proxy, or a forged chain).
    """

    name = "headers"

    def weigh(self, attempt: Attempt) -> Finding | None:
        headers = attempt.headers
        found: list[tuple[float, str]] = []
        forwarded = [name for name in FORWARDING_HEADERS if name in headers]
        if forwarded:
            found.append((10.0, f"{', '.join(forwarded)} from a proxy WakeDock does not trust"))
        family, major, system = browser_of(attempt.user_agent) if attempt.user_agent else (
            None, None, None)  # fmt: skip
        if family in BROWSERS and not is_api_client(headers):
            found.extend(_browser_anomalies(headers, family or "", major, system))
        if not found:
            return None
        score = min(HEADERS_CAP, sum(score for score, _ in found))
        return Finding(self.name, score, "; ".join(reason for _, reason in found))


def _browser_anomalies(
    headers: Mapping[str, str], family: str, major: int | None, system: str | None
) -> list[tuple[float, str]]:
    found: list[tuple[float, str]] = []
    if "accept" not in headers:
        found.append((15.0, "a browser user agent without Accept"))
    if "accept-language" not in headers:
        found.append((10.0, "a browser user agent without Accept-Language"))
    hints = "sec-ch-ua" in headers
    if family in CHROMIUM and (major or 0) >= 90 and "sec-fetch-mode" in headers and not hints:
        found.append((20.0, f"{family} {major} sends Fetch Metadata but no client hints"))
    if family in NO_CLIENT_HINTS and hints:
        found.append((20.0, f"client hints from a {family} user agent, which sends none"))
    platform = PLATFORMS.get(headers.get("sec-ch-ua-platform", "").strip().strip('"'))
    if (
        platform
        and system in PLATFORMS.values()
        and platform != system
        and {platform, system} != {"Android", "Linux"}
    ):
        found.append((20.0, f"the platform hint says {platform}, the user agent {system}"))
    return found
