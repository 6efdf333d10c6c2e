"""A short, human name for the device behind a session, read from its User-Agent.

The full header stays in the database (and in the page's tooltip): this is only what a person
recognises at a glance ("Firefox 128 on Linux"), never a security decision.
"""

from __future__ import annotations

import re

# Most specific first: Edge and Opera also claim Chrome, Chrome also claims Safari.
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"\bOPR/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:HeadlessChrome|Chrome|Chromium|CriOS)/(\d+)")),
    ("Safari", re.compile(r"\bVersion/(\d+)[\d.]* (?:Mobile/\S+ )?Safari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(?:iPhone|iPad|iPod)\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)
# Command-line clients and libraries name themselves first: `curl/8.5.0`, `python-httpx/0.27`.
_TOOL = re.compile(r"^([A-Za-z][A-Za-z0-9._-]{0,30})/(\d[\w.]{0,15})")
_LONGEST = 60


def describe_device(user_agent: str) -> str:
    """`Chrome 131 on Linux`, `curl 8.5.0`, the header cut short, or `Unknown device`."""
    agent = " ".join(user_agent.split())
    if not agent:
        return "Unknown device"
    system = next((name for name, pattern in _SYSTEMS if pattern.search(agent)), None)
    for name, pattern in _BROWSERS:
        found = pattern.search(agent)
        if found:
            browser = f"{name} {found.group(1)}"
            return f"{browser} on {system}" if system else browser
    if not agent.startswith("Mozilla/"):
        tool = _TOOL.match(agent)
        if tool:
            return f"{tool.group(1)} {tool.group(2)}"
    if len(agent) <= _LONGEST:
        return agent
    return agent[: _LONGEST - 1] + "\u2026"
