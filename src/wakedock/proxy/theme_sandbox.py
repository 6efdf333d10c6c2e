"""Renders one custom loading-page template, in a process of its own: run by path as
`python -I theme_sandbox.py` (proxy/themes.py), with an empty environment.

Two fences. Jinja2's `ImmutableSandboxedEnvironment` refuses every attribute that starts with
`_` (no `''.__class__.__mro__` walk to Python's internals) and any change to a value; autoescape
is on (and the values come already escaped), undefined names fail, and the only names are the
values handed in (plus `range`, itself bounded): no loader (no include or import), no `config`,
no `request`, nothing else. The process bounds what the first fence does not: its memory and
CPU time (rlimits set before anything is read), no file it may write, the size of what it
prints; the parent kills it at its deadline.

Reads `{"source", "values", "max_output"}` as JSON on stdin; writes `{"html"}` or `{"error"}`.
Imports only the standard library and Jinja2: this file never imports WakeDock.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

# Enough for Python, Jinja2 and a page; a memory bomb (`'x' * 10**10`) fails instead.
MEMORY_BYTES = 384 * 1024 * 1024
CPU_SECONDS = 2
MAX_INPUT = 256 * 1024


def _fence() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    # No file of any size may be written, and no new process started.
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def render(source: str, values: dict[str, Any], max_output: int) -> str:
    """The template's output, or an exception saying why not."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from markupsafe import escape

    environment = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
    bounded_range = environment.globals["range"]
    environment.globals.clear()
    environment.globals["range"] = bounded_range
    template = environment.from_string(source)
    # Escaped before the template sees them: `|safe` or `{% autoescape false %}` cannot unescape
    # a display name.
    escaped = {
        key: escape(value) if isinstance(value, str) else value for key, value in values.items()
    }
    parts: list[str] = []
    size = 0
    for part in template.generate(**escaped):
        size += len(part)
        if size > max_output:
            raise ValueError(f"the page is larger than {max_output} characters")
        parts.append(part)
    return "".join(parts)


def main() -> None:
    _fence()
    request = json.loads(sys.stdin.buffer.read(MAX_INPUT))
    try:
        answer = {"html": render(request["source"], request["values"], request["max_output"])}
    except Exception as exc:  # noqa: BLE001 - any failure of the template is the answer
        answer = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    sys.stdout.buffer.write(json.dumps(answer).encode("ascii"))


if __name__ == "__main__":
    main()
