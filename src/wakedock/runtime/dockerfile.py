"""A Dockerfile read into stages and instructions, for the CIS section 4 checks.

Follows the Dockerfile reference closely enough to judge one: parser directives (`# escape=`),
comments (only where a line starts with `#`, also inside a continued instruction, as BuildKit
skips them), line continuations with the escape character, blank lines inside a continuation,
the JSON (exec) form of arguments, and multi-stage builds (`FROM ... AS name`). Heredocs
(`RUN <<EOF`) are kept as the first line's text and the body is skipped, so an instruction inside
a heredoc is never mistaken for one of the Dockerfile's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), its argument text and where it starts."""

    line: int
    keyword: str
    arguments: str
    # The exec form's list when the arguments are a JSON array of strings, else None.
    exec_form: tuple[str, ...] | None = None

    def words(self) -> list[str]:
        """The arguments as words: the exec form's items, else split on whitespace."""
        return list(self.exec_form) if self.exec_form is not None else self.arguments.split()


@dataclass
class Stage:
    """A build stage: its `FROM` line and the instructions up to the next one."""

    index: int
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Dockerfile:
    stages: tuple[Stage, ...]
    # Instructions before the first FROM (ARG only, by the reference).
    preamble: tuple[Instruction, ...] = ()

    @property
    def final(self) -> Stage | None:
        """The stage the image is made of (the last one)."""
        return self.stages[-1] if self.stages else None

    def instructions(self) -> list[Instruction]:
        """Every instruction of every stage, the preamble's first, in file order."""
        return [*self.preamble, *(i for s in self.stages for i in s.instructions)]


class DockerfileError(ValueError):
    """The text is not a Dockerfile (an instruction without a keyword, a FROM without image)."""


def _exec_form(arguments: str) -> tuple[str, ...] | None:
    if not arguments.startswith("["):
        return None
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return None  # not valid JSON: the reference treats it as the shell form
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return tuple(parsed)
    return None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, joined text) of each instruction, continuations joined."""
    lines = text.splitlines()
    escape = "\\"
    start = 0
    # Parser directives: only at the very top, before any comment, blank line or instruction.
    for number, raw in enumerate(lines):
        match = _DIRECTIVE.match(raw.strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
        start = number + 1
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    heredoc: str | None = None
    for number in range(start, len(lines)):
        raw = lines[number]
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue  # a comment, or a blank line inside a continuation
        if not stripped:
            continue
        if not pending:
            first = number + 1
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append(body[: -len(escape)].strip())
            continue
        pending.append(body.strip())
        joined = " ".join(part for part in pending if part)
        result.append((first, joined))
        pending = []
        marker = _HEREDOC.search(joined)
        if marker and joined.split(None, 1)[0].upper() in ("RUN", "COPY", "ADD"):
            heredoc = marker.group(1)
    if pending:
        result.append((first, " ".join(part for part in pending if part)))
    return result


def parse_dockerfile(text: str) -> Dockerfile:
    """Stages and instructions of a Dockerfile's text; raises `DockerfileError` if it has none."""
    stages: list[Stage] = []
    preamble: list[Instruction] = []
    for line, joined in _logical_lines(text):
        keyword, _, rest = joined.partition(" ")
        if not re.fullmatch(r"[A-Za-z]+", keyword):
            raise DockerfileError(f"line {line}: not an instruction")
        instruction = Instruction(line, keyword.upper(), rest.strip(), _exec_form(rest.strip()))
        if instruction.keyword == "FROM":
            words = [w for w in instruction.words() if not w.startswith("--")]
            if not words:
                raise DockerfileError(f"line {line}: FROM without an image")
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(len(stages), words[0], name, line))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    if not stages:
        raise DockerfileError("no FROM instruction")
    return Dockerfile(tuple(stages), tuple(preamble))
