"""axe-core in a real page: the accessibility check of the browser tests.

axe-core comes from the npm registry (`npm pack axe-core@4.14.1`, its `axe.min.js`), vendored in
tests/browser/vendor/ with its licence; it is injected by the test only (through the DevTools
protocol: WakeDock's pages never load it, and their CSP stays as it is).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

AXE_VERSION = "4.14.1"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
AXE = Path(__file__).resolve().parents[1] / "browser" / "vendor" / "axe.min.js"


def axe_source() -> str:
    """The vendored axe.min.js, refused if it is not the one recorded."""
    source = AXE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    if digest != AXE_SHA256:
        raise AssertionError(f"{AXE} is not axe-core {AXE_VERSION} (sha256 {digest})")
    return source.decode()


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """The serious and critical violations axe finds on the page as it is now (WCAG 2.x A/AA
    and best practices), each with the markup of its first few nodes."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["html"] for n in v["nodes"][:3]],
        }
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


# The two widths every page is checked and photographed at: a laptop and a phone.
WIDE = {"width": 1440, "height": 900}
NARROW = {"width": 390, "height": 844}


def check_accessibility(
    page: Any, shot: Callable[[str], None], step: str, *, dark: bool = False
) -> None:
    """axe-core at both widths (and in the dark scheme too, if asked), a screenshot of each
    (`shot(name)`); the page is left wide and light."""
    for scheme in ("light", "dark") if dark else ("light",):
        page.emulate_media(color_scheme=scheme)
        for size, label in ((WIDE, "1440"), (NARROW, "390")):
            page.set_viewport_size(size)
            shot(f"{step}-{label}px" + ("-dark" if scheme == "dark" else ""))
            found = serious_violations(page)
            assert found == [], (step, scheme, label, found)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(WIDE)
