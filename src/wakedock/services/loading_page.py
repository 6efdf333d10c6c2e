"""The loading page a service's visitors see while it wakes (`loading_page` in the spec): the
built-in theme, a dark one, or a custom template uploaded through the files API.

A custom template is a file of the service's own folder in the files API (`<name>/...`, the
folder only the service's owner, operators and admins may write or read), checked when the spec
is saved: it must exist, be UTF-8, at most `MAX_TEMPLATE_BYTES`, and parse as a Jinja2
template. The proxy renders it in a sandbox (proxy/themes.py); this module only says what a
valid choice is.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, Protocol

from jinja2 import Environment, TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

if TYPE_CHECKING:
    from wakedock.services.errors import InvalidServiceSpec

from wakedock.errors import InvalidInput, NotFound

# A loading page is a few lines of markup: 64 KiB bounds the work of every render.
MAX_TEMPLATE_BYTES = 64 * 1024
# The files API's path grammar, narrowed: segments of letters, digits, '_', '.', '-'.
_TEMPLATE_PATH = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}(?:/[A-Za-z0-9_.-]{1,128}){1,8}$")
_FIELD = "loading_page.template"


class TemplateFiles(Protocol):
    """Where custom templates are read from: the files API's store (files/store.py)."""

    def read(self, relative: str) -> bytes: ...


class LoadingPage(BaseModel):
    """`theme`: `default` (light or dark as the visitor's system prefers), `dark`, or `custom`
    with `template`, a path of the files API inside the service's folder (`app/loading.html`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    theme: Literal["default", "dark", "custom"] = "default"
    # Validated even when left out: a custom theme without one is refused.
    template: str | None = Field(default=None, validate_default=True)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        theme = info.data.get("theme")
        if theme == "custom" and value is None:
            raise ValueError("a custom theme needs a template (a file uploaded to the files API)")
        if theme != "custom" and value is not None:
            raise ValueError("only allowed when theme is 'custom'")
        if value is not None and (
            not _TEMPLATE_PATH.fullmatch(value) or {".", ".."} & set(value.split("/"))
        ):
            raise ValueError("must be a files API path such as '<service>/loading.html'")
        return value


def check_template_folder(page: LoadingPage, service: str) -> None:
    """The template must live in the service's own folder: the one the files API lets this
    service's owner (and operators and admins) write, and nobody else."""
    if page.template is not None and page.template.split("/", 1)[0] != service:
        raise ValueError(f"template must be a file of the service's folder ('{service}/...')")


def decode_template(content: bytes) -> str:
    """The template's text; InvalidServiceSpec when it is too large or not UTF-8."""
    if len(content) > MAX_TEMPLATE_BYTES:
        raise _invalid(f"the template is larger than {MAX_TEMPLATE_BYTES} bytes")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("the template is not UTF-8 text") from None


def check_template(files: TemplateFiles, page: LoadingPage) -> None:
    """A custom theme's template exists, is small enough, and parses (syntax only: whatever
    it does is judged by the sandbox at render time). InvalidServiceSpec (422) otherwise."""
    if page.theme != "custom" or page.template is None:
        return
    try:
        content = files.read(page.template)
    except (NotFound, InvalidInput):
        # Absent, or refused by the store (a symbolic link on the way): either way not usable.
        raise _invalid("no such file: upload the template with PUT /api/v1/files/...") from None
    source = decode_template(content)
    try:
        # Parsing only: nothing of the template runs here.
        Environment(autoescape=True).parse(source)
    except TemplateSyntaxError as exc:
        raise _invalid(f"the template does not parse: line {exc.lineno}: {exc.message}") from None


def _invalid(message: str) -> InvalidServiceSpec:
    # Imported here: services.errors imports the spec (through the policy), which imports this.
    from wakedock.services.errors import InvalidServiceSpec

    return InvalidServiceSpec(f"{_FIELD}: {message}", extra={"fields": [_FIELD]})
