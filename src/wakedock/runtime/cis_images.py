"""CIS Docker Benchmark v1.6.0, section 4 (images and build files): the items an image's config
and history, or its Dockerfile, prove.

Judged: 4.1 a non-root user, 4.6 a HEALTHCHECK, 4.7 no package-index update alone on a RUN line,
4.9 COPY rather than ADD, 4.10 no secrets in ENV/ARG/LABEL or in the build's command lines. Not
judged here: 4.2 trusted base images, 4.3/4.4 package choice and rebuilds, 4.5 content trust,
4.8 setuid bits, 4.11 verified packages (operator practice or a filesystem scan).

Each check sees an image (`ImageFacts`: `Config` and `CreatedBy` of its history, from the engine),
a Dockerfile, or both, and gives one `Finding`. A reason names the variable, label or line, never
a value: a secret found is not repeated on a terminal or in a CI log.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wakedock.runtime.dockerfile import Dockerfile, Instruction


class Verdict(StrEnum):
    # A verdict, not a password.
    PASS = "PASS"  # noqa: S105  # nosec B105
    WARN = "WARN"
    FAIL = "FAIL"
    # An accepted, documented exception (e.g. the socket proxy's read-only socket).
    INFO = "INFO"


@dataclass(frozen=True)
class Finding:
    id: str
    title: str
    verdict: Verdict
    # Why (what was seen, or which line), safe to print.
    reason: str


@dataclass(frozen=True)
class ImageFacts:
    """What the engine says of an image: `Config` of `docker inspect`, history oldest first."""

    name: str
    config: Mapping[str, Any]
    history: tuple[str, ...]


@dataclass(frozen=True)
class HistoryStep:
    """A history entry read back as an instruction (legacy builder and BuildKit forms)."""

    position: int
    keyword: str
    arguments: str
    # Build arguments the legacy builder records in front of a RUN (`|1 NAME=value /bin/sh -c`).
    build_args: tuple[tuple[str, str], ...] = ()


_KEYWORDS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL"}
_KEYWORDS |= {"MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}


def _build_args(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    match = re.match(r"^\|(\d+)\s+", text)
    if not match:
        return (), text
    words = text[match.end() :].split(" ")
    count = int(match.group(1))
    pairs = tuple((w.partition("=")[0], w.partition("=")[2]) for w in words[:count])
    return pairs, " ".join(words[count:])


def history_steps(history: tuple[str, ...]) -> list[HistoryStep]:
    """Each `CreatedBy` as an instruction; entries without one (`docker import`) are skipped."""
    steps = []
    for position, created_by in enumerate(history):
        text = created_by.strip().removesuffix("# buildkit").strip()
        if not text or text.startswith("Imported from"):
            continue
        nop = re.match(r"^/bin/sh -c #\(nop\)\s*(.*)$", text, re.S)
        if nop:
            keyword, _, rest = nop.group(1).strip().partition(" ")
            steps.append(HistoryStep(position, keyword.upper(), rest.strip()))
            continue
        keyword, _, rest = text.partition(" ")
        if keyword.upper() in _KEYWORDS and keyword.upper() != "RUN":
            steps.append(HistoryStep(position, keyword.upper(), rest.strip()))
            continue
        if keyword == "RUN":
            text = rest.strip()
        args, command = _build_args(text)
        command = command.removeprefix("/bin/sh -c ").strip()
        steps.append(HistoryStep(position, "RUN", command, args))
    return steps


ImageJudge = Callable[[ImageFacts], list[str]]
FileJudge = Callable[[Dockerfile], list[str]]


@dataclass(frozen=True)
class ImageCheck:
    """A section 4 item: what it finds wrong in an image, and in a Dockerfile."""

    id: str
    title: str
    in_image: ImageJudge
    in_dockerfile: FileJudge


def _is_root(user: str) -> bool:
    name = user.split(":", 1)[0].strip()
    return name in ("", "root", "0")


def _last(dockerfile: Dockerfile, keyword: str) -> Instruction | None:
    final = dockerfile.final
    found = [i for i in final.instructions if i.keyword == keyword] if final else []
    return found[-1] if found else None


def _user_image(image: ImageFacts) -> list[str]:
    user = str(image.config.get("User") or "")
    if not user:
        return ["image: no USER, the container runs as root"]
    return [f"image: runs as {user!r}"] if _is_root(user) else []


def _user_file(dockerfile: Dockerfile) -> list[str]:
    user = _last(dockerfile, "USER")
    if user is None:
        return ["Dockerfile: the final stage sets no USER"]
    if _is_root(user.arguments):
        return [f"Dockerfile line {user.line}: USER {user.arguments}"]
    return []


def _health_image(image: ImageFacts) -> list[str]:
    test = (image.config.get("Healthcheck") or {}).get("Test") or []
    if not test:
        return ["image: no HEALTHCHECK"]
    return ["image: HEALTHCHECK NONE"] if test[0] == "NONE" else []


def _health_file(dockerfile: Dockerfile) -> list[str]:
    check = _last(dockerfile, "HEALTHCHECK")
    if check is None:
        return ["Dockerfile: the final stage has no HEALTHCHECK"]
    if check.arguments.strip().upper() == "NONE":
        return [f"Dockerfile line {check.line}: HEALTHCHECK NONE"]
    return []


_MANAGERS = r"(?:apt-get|apt|apk|yum|dnf|microdnf|zypper)"
_UPDATE = re.compile(rf"(?:^|[\s;&|/(]){_MANAGERS}(?:\s+-{{1,2}}\S+)*\s+(?:update|refresh)\b")
_INSTALL = re.compile(
    rf"(?:^|[\s;&|/(]){_MANAGERS}(?:\s+-{{1,2}}\S+)*\s+(?:install|add|upgrade|dist-upgrade)\b"
)


def _update_alone(command: str) -> str | None:
    """The package-index update of a RUN line that installs nothing, else None."""
    update = _UPDATE.search(command)
    if update is None or _INSTALL.search(command):
        return None
    # Only the update itself is quoted: the rest of the line may hold what must not be printed.
    return update.group(0).strip(" ;&|(/")


def _update_image(image: ImageFacts) -> list[str]:
    problems = []
    for step in history_steps(image.history):
        update = _update_alone(step.arguments) if step.keyword == "RUN" else None
        if update:
            problems.append(f"image history #{step.position}: RUN {update} (no install)")
    return problems


def _update_file(dockerfile: Dockerfile) -> list[str]:
    problems = []
    for i in dockerfile.instructions():
        update = _update_alone(" ".join(i.words())) if i.keyword == "RUN" else None
        if update:
            problems.append(f"Dockerfile line {i.line}: RUN {update} (no install)")
    return problems


def _short(arguments: str) -> str:
    """History arguments for a reason: the classic builder's content hashes cut to 12 digits."""
    return re.sub(r"\b((?:file|dir|multi):[0-9a-f]{12})[0-9a-f]{52}\b", r"\1", arguments)[:80]


def _add_image(image: ImageFacts) -> list[str]:
    steps = history_steps(image.history)
    problems = []
    for index, step in enumerate(steps):
        words = step.arguments.split()
        # A base image's root filesystem, ADDed to / as its very first layer, is the base's build.
        if step.keyword != "ADD" or (index == 0 and words and words[-1] == "/"):
            continue
        problems.append(f"image history #{step.position}: ADD {_short(step.arguments)}")
    return problems


def _add_file(dockerfile: Dockerfile) -> list[str]:
    problems = []
    for i in dockerfile.instructions():
        if i.keyword != "ADD":
            continue
        sources = [w for w in i.words() if not w.startswith("--")][:-1]
        kind = "a URL" if any("://" in s for s in sources) else "a local file"
        problems.append(f"Dockerfile line {i.line}: ADD of {kind} ({' '.join(sources)[:60]})")
    return problems


# A name that says its value is a secret; then names that say it is not (a path to a secret
# file, a public key's fingerprint as the CPython images' GPG_KEY is).
_SECRET_NAME = re.compile(
    r"(?i)(passw(or)?d|passphrase|secret|token|api[_.-]?key|private[_.-]?key|access[_.-]?key"
    r"|credential|(^|[_.-])key$|(^|[_.-])auth([_.-]|$))"
)
_NOT_SECRET_NAME = re.compile(
    r"(?i)(_file|_path|_dir|_ttl|_seconds|_minutes|_days|_length|_id|_provider|_backend|_source"
    r"|_type|_mode|_enabled|_algorithm|_header|_name)$|public|fingerprint|^gpg_key$"
)
_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key block", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{40,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("a Stripe live key", re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}")),
    ("a JSON Web Token", re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")),
    ("a password in a URL", re.compile(r"://[^/\s:@]+:(?![$])[^/\s@]+@")),
)


def _literal(value: str) -> bool:
    value = value.strip().strip("\"'")
    if not value or re.fullmatch(r"\$\{?\w+\}?", value) or value.startswith("/run/secrets/"):
        return False
    return not (value.isdigit() or value.lower() in ("true", "false", "yes", "no", "none"))


def secret_name(name: str, value: str) -> bool:
    """A variable or label named like a secret and given a literal value. Of a nested settings
    name (`WAKEDOCK_SECRETS__PROVIDER`) only the field after the last `__` counts."""
    name = name.rsplit("__", 1)[-1]
    return bool(_SECRET_NAME.search(name) and not _NOT_SECRET_NAME.search(name) and _literal(value))


def token_kinds(text: str) -> list[str]:
    """The well-known secret formats seen in `text` (their kinds, never the match)."""
    return [kind for kind, pattern in _TOKEN_PATTERNS if pattern.search(text)]


def _pairs(keyword: str, arguments: str) -> Iterator[tuple[str, str]]:
    """NAME=value pairs of an ENV, ARG or LABEL (and the legacy `ENV NAME value`)."""
    try:
        words = shlex.split(arguments, posix=True)
    except ValueError:
        words = arguments.split()
    if keyword == "ENV" and words and "=" not in words[0]:
        yield words[0], " ".join(words[1:])
        return
    for word in words:
        name, _, value = word.partition("=")
        yield name, value


def _secret_steps(where: str, keyword: str, arguments: str) -> list[str]:
    problems = []
    if keyword in ("ENV", "ARG", "LABEL"):
        problems += [
            f"{where}: {keyword} {name} has a literal value"
            for name, value in _pairs(keyword, arguments)
            if secret_name(name, value)
        ]
    problems += [f"{where}: {kind} in {keyword}" for kind in token_kinds(arguments)]
    return problems


def _secrets_image(image: ImageFacts) -> list[str]:
    problems = []
    for entry in image.config.get("Env") or []:
        name, _, value = str(entry).partition("=")
        if secret_name(name, value):
            problems.append(f"image: ENV {name} has a literal value")
        problems += [f"image: {kind} in ENV {name}" for kind in token_kinds(value)]
    for name, value in (image.config.get("Labels") or {}).items():
        if secret_name(str(name), str(value)):
            problems.append(f"image: LABEL {name} has a literal value")
    for step in history_steps(image.history):
        where = f"image history #{step.position}"
        problems += [
            f"{where}: build argument {name} has a literal value"
            for name, value in step.build_args
            if secret_name(name, value)
        ]
        problems += _secret_steps(where, step.keyword, step.arguments)
    return list(dict.fromkeys(problems))  # ENV is both in the config and in the history


def _secrets_file(dockerfile: Dockerfile) -> list[str]:
    problems = []
    for i in dockerfile.instructions():
        problems += _secret_steps(f"Dockerfile line {i.line}", i.keyword, i.arguments)
    return problems


IMAGE_CHECKS: tuple[ImageCheck, ...] = (
    ImageCheck("4.1", "A user for the container has been created", _user_image, _user_file),
    ImageCheck("4.6", "HEALTHCHECK instructions have been added", _health_image, _health_file),
    ImageCheck("4.7", "Update instructions are not used alone", _update_image, _update_file),
    ImageCheck("4.9", "COPY is used instead of ADD", _add_image, _add_file),
    ImageCheck("4.10", "Secrets are not stored in images", _secrets_image, _secrets_file),
)


def printable(text: str) -> str:
    """A reason safe for a terminal and a CI log: no control characters (escape sequences from a
    hostile Dockerfile or history), no user:password of a URL."""
    text = re.sub(r"://[^/\s@]*@", "://***@", text)
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)


def check_image(image: ImageFacts | None, dockerfile: Dockerfile | None) -> list[Finding]:
    """Every section 4 check against an image, a Dockerfile or both (one finding per check)."""
    findings = []
    for check in IMAGE_CHECKS:
        problems = (check.in_image(image) if image is not None else []) + (
            check.in_dockerfile(dockerfile) if dockerfile is not None else []
        )
        if problems:
            reason = printable("; ".join(problems))
            findings.append(Finding(check.id, check.title, Verdict.FAIL, reason))
        else:
            findings.append(Finding(check.id, check.title, Verdict.PASS, "ok"))
    return findings
