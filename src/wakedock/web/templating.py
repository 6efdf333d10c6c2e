"""The admin host's HTML pages: Jinja2 templates, autoescaped, and one static stylesheet.

No inline script or style anywhere (CSP `script-src 'self'; style-src 'self'`): the look comes
from `/assets/wakedock.css`, and the pages that need one get WakeDock's own small script
(`/assets/wakedock.js`, with its Subresource Integrity hash), both served by WakeDock itself.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

STYLESHEET_PATH = "/assets/wakedock.css"
SCRIPT_PATH = "/assets/wakedock.js"

_templates = Environment(
    loader=PackageLoader("wakedock.web", "templates"),
    # Every value is escaped, whatever the template's name: no page may reflect markup.
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals["stylesheet"] = STYLESHEET_PATH
_templates.globals["script"] = SCRIPT_PATH


def render_page(template: str, status: int = 200, **values: object) -> HTMLResponse:
    """A rendered page, never stored by a browser or proxy: these pages carry CSRF tokens, MFA
    challenge tokens, secrets or backup codes."""
    body = _templates.get_template(template).render(**values)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def message_page(
    title: str, message: str, status: int, link: str | None = None, link_text: str = "Continue"
) -> HTMLResponse:
    """A short page that says what happened (and, with `link`, where to go on)."""
    return render_page(
        "message.html", status, title=title, message=message, link=link, link_text=link_text
    )


def stylesheet() -> str:
    return files("wakedock.web").joinpath("static/wakedock.css").read_text(encoding="utf-8")


def script() -> bytes:
    """The pages' script, as served."""
    return files("wakedock.web").joinpath("static/wakedock.js").read_bytes()


def integrity(asset: bytes) -> str:
    """The Subresource Integrity value of `asset` (`sha256-<base64>`): a browser runs the file
    only if it is exactly this one."""
    return "sha256-" + base64.b64encode(hashlib.sha256(asset).digest()).decode()


_templates.globals["script_integrity"] = integrity(script())
