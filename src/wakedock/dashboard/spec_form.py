"""The create / edit form of a service, without HTTP: its controls to a spec's fields and back,
its YAML text area, and every problem placed beside the control it concerns.

The form only arranges what a person typed into the shape of a `ServiceSpec` (a list control
is one item per line, a number stays the text typed); judging it is pydantic's and the launch
policy's, exactly as for the API. So one submission lists every problem at once: the lines the
form could not arrange, every validation error, and the policy's violations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from wakedock.errors import WakeDockError
from wakedock.rbac.permissions import Role
from wakedock.services.errors import PolicyRefused
from wakedock.services.policy import Violation
from wakedock.services.spec import HealthcheckProbe, HttpProbe, ServiceSpec, TcpProbe

# The YAML text area's own limit (the whole body is limited by http.max_body_bytes, 64 KiB by
# default): a spec is a few hundred bytes; the CLI reads at most as much.
MAX_YAML_BYTES = 32 * 1024
# Where a problem concerning no control goes (shown at the top of the form).
TOP = "_top"
YAML = "yaml"

TEXT = ("name", "display_name", "image", "stop_signal", "network_mode", "pid_mode", "ipc_mode",
        "uts_mode")  # fmt: skip
NUMBERS = ("wake_timeout_s", "idle_timeout_s", "stop_timeout_s")
LIMITS = ("memory_mb", "cpus", "pids")
PROBE_TIMING = ("interval_s", "timeout_s", "retries")
# One item per line; `command` and the probe's `test` keep their items as typed.
LINES = ("command", "env", "ports", "volumes", "hosts", "depends_on", "cap_add", "devices",
         "tmpfs", "readiness_test")  # fmt: skip
CHECKBOXES = ("privileged", "read_only_root")
PROBE_TYPES = ("http", "tcp", "healthcheck")
ACCESS_POLICIES = ("authenticated", "public", "roles")
STOP_METHODS = ("stop", "pause")
LOADING_THEMES = ("default", "dark", "custom")
ROLES = tuple(role.value for role in Role)
CONTROLS = frozenset(
    {*TEXT, *NUMBERS, *LINES, *CHECKBOXES, "stop_method", "readiness_type", "readiness_path",
     "readiness_port", "access_policy", "access_roles", "access_network_filter",
     "loading_page_theme",
     "loading_page_template"}
    | {f"limits_{n}" for n in LIMITS}
    | {f"readiness_{n}" for n in PROBE_TIMING}
)  # fmt: skip
_PORT = re.compile(r"^(?:(?P<host>[^:/]*):)?(?P<container>[^:/]*)(?:/(?P<protocol>.*))?$")
_VALUE_ERROR = "Value error, "

FormValues = dict[str, str | list[str]]


@dataclass
class Problems:
    """What is wrong, by control (TOP: the form as a whole), in the order found."""

    by_control: dict[str, list[str]] = field(default_factory=dict)

    def add(self, control: str, message: str) -> None:
        self.by_control.setdefault(control, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_control)


@dataclass
class Arranged:
    """The spec's fields as arranged from the form, and where each list item came from."""

    data: dict[str, Any]
    # For each list control, the line number (1-based) of each item kept (blank lines skipped).
    lines: dict[str, list[int]] = field(default_factory=dict)


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _text(values: Mapping[str, str | list[str]], name: str) -> str:
    value = values.get(name, "")
    return value if isinstance(value, str) else (value[-1] if value else "")


def _port(line: str) -> dict[str, Any]:
    """`[host port:]container port[/protocol]`, Docker's order; pydantic judges each part."""
    found = _PORT.fullmatch(line)
    if found is None:
        return {"container_port": line}
    port: dict[str, Any] = {"container_port": found["container"]}
    if found["host"]:
        port["host_port"] = found["host"]
    if found["protocol"] is not None:
        port["protocol"] = found["protocol"]
    return port


def _volume(line: str) -> dict[str, Any]:
    """`name:/target[:ro|rw]` or `/host/path:/target[:ro|rw]`, as `docker run -v`."""
    parts = line.split(":")
    mode = parts.pop() if len(parts) > 2 and parts[-1] in ("ro", "rw") else None
    source, target = (parts[0], ":".join(parts[1:])) if len(parts) > 1 else ("", parts[0])
    volume: dict[str, Any] = {"source" if source.startswith("/") else "name": source}
    volume["target"] = target
    if mode is not None:
        volume["read_only"] = mode == "ro"
    return volume


def arrange(values: Mapping[str, str | list[str]], problems: Problems) -> Arranged:
    """The spec's fields from the form's controls (an empty control: the spec's default); a
    line the form cannot arrange is a problem of its control."""
    data: dict[str, Any] = {}
    arranged = Arranged(data)
    for name in (*TEXT, *NUMBERS):
        if text := _text(values, name).strip():
            data[name] = text
    for name in CHECKBOXES:
        data[name] = _text(values, name) == "on"
    if method := _text(values, "stop_method"):
        data["stop_method"] = method
    limits = {n: v for n in LIMITS if (v := _text(values, f"limits_{n}").strip())}
    data["limits"] = limits
    probe: dict[str, Any] = {"type": _text(values, "readiness_type")}
    for name in ("path", "port", *PROBE_TIMING):
        if value := _text(values, f"readiness_{name}").strip():
            probe[name] = value
    data["readiness"] = probe
    access: dict[str, Any] = {"policy": _text(values, "access_policy") or "authenticated"}
    roles = values.get("access_roles", [])
    access["roles"] = [roles] if isinstance(roles, str) else list(roles)
    access["network_filter"] = _text(values, "access_network_filter") == "on"
    data["access"] = access
    # The loading page (services/loading_page.py): a template only with the custom theme.
    loading: dict[str, Any] = {"theme": _text(values, "loading_page_theme") or "default"}
    if template := _text(values, "loading_page_template").strip():
        loading["template"] = template
    data["loading_page"] = loading
    for name in LINES:
        lines = _lines(_text(values, name))
        if not lines:
            continue
        arranged.lines[name] = [n for n, _ in lines]
        items = [line for _, line in lines]
        if name == "readiness_test":
            probe["test"] = items
        elif name == "env":
            data["env"] = _environment(lines, problems)
            arranged.lines[name] = []
        elif name == "ports":
            data["ports"] = [_port(line) for line in items]
        elif name == "volumes":
            data["volumes"] = [_volume(line) for line in items]
        else:
            data[name] = items
    if probe["type"] != "http":
        probe.pop("path", None)
    if probe["type"] != "healthcheck":
        probe.pop("test", None)
    if probe["type"] == "healthcheck":
        probe.pop("port", None)
    return arranged


def _environment(lines: list[tuple[int, str]], problems: Problems) -> dict[str, str]:
    environment: dict[str, str] = {}
    for number, line in lines:
        key, equals, value = line.partition("=")
        if not equals:
            problems.add("env", f"line {number}: write NAME=value")
        elif key.strip() in environment:
            problems.add("env", f"line {number}: this name is already set above")
        else:
            environment[key.strip()] = value
    return environment


def values_of(spec: ServiceSpec) -> FormValues:
    """The form's controls showing `spec` (the edit page)."""
    probe = spec.readiness
    values: FormValues = {
        name: "" if getattr(spec, name) is None else str(getattr(spec, name))
        for name in (*TEXT, *NUMBERS)
    }
    values.update({name: "on" if getattr(spec, name) else "" for name in CHECKBOXES})
    values["stop_method"] = spec.stop_method
    values.update({f"limits_{n}": str(getattr(spec.limits, n)) for n in LIMITS})
    values["readiness_type"] = probe.type
    values.update({f"readiness_{n}": str(getattr(probe, n)) for n in PROBE_TIMING})
    values["readiness_port"] = str(probe.port) if isinstance(probe, HttpProbe | TcpProbe) else ""
    values["readiness_path"] = probe.path if isinstance(probe, HttpProbe) else "/"
    values["readiness_test"] = "\n".join(probe.test) if isinstance(probe, HealthcheckProbe) else ""
    values["access_policy"] = spec.access.policy
    values["access_roles"] = [role.value for role in spec.access.roles]
    values["access_network_filter"] = "on" if spec.access.network_filter else ""
    values["loading_page_theme"] = spec.loading_page.theme
    values["loading_page_template"] = spec.loading_page.template or ""
    values["command"] = "\n".join(spec.command or [])
    values["env"] = "\n".join(f"{k}={v}" for k, v in spec.env.items())
    values["ports"] = "\n".join(
        f"{f'{p.host_port}:' if p.host_port else ''}{p.container_port}"
        f"{'/udp' if p.protocol == 'udp' else ''}"
        for p in spec.ports
    )
    values["volumes"] = "\n".join(
        f"{getattr(v, 'source', None) or getattr(v, 'name', '')}:{v.target}:"
        f"{'ro' if v.read_only else 'rw'}"
        for v in spec.volumes
    )
    for name in ("hosts", "depends_on", "cap_add", "devices", "tmpfs"):
        values[name] = "\n".join(getattr(spec, name))
    return values


def new_values() -> FormValues:
    """The new-service page's controls: the spec's defaults (an HTTP probe on `/`)."""
    values = values_of(ServiceSpec(name="x", image="x", readiness=HttpProbe(type="http", port=80)))
    values.update(name="", image="", readiness_port="")
    return values


def yaml_of(spec: ServiceSpec) -> str:
    """The spec as YAML, what differs from the defaults only (the edit page's text area)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data["readiness"] = spec.readiness.model_dump(mode="json", exclude_defaults=True)
    data["readiness"]["type"] = spec.readiness.type
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


class _NoAliases(yaml.SafeLoader):
    """safe_load without anchors and aliases: a few lines of them expand into gigabytes once
    validated (the "billion laughs"); a spec never needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not accepted here", problem_mark=mark
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, problems: Problems) -> dict[str, Any] | None:
    """The mapping in the text area, or None with the reason beside it (never the text)."""
    if len(text.encode()) > MAX_YAML_BYTES:
        problems.add(YAML, f"larger than {MAX_YAML_BYTES // 1024} KiB")
        return None
    try:
        # _NoAliases is a SafeLoader: plain data only, no Python objects.
        data = yaml.load(text, Loader=_NoAliases)  # noqa: S506  # nosec B506
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problems.add(YAML, f"not valid YAML{where}: {exc.problem or 'cannot be read'}")
        return None
    except (yaml.YAMLError, RecursionError):
        problems.add(YAML, "not valid YAML (or nested too deeply)")
        return None
    if not isinstance(data, dict):
        problems.add(YAML, "must be a mapping of the spec's fields (name: ..., image: ...)")
        return None
    return data


def _path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


def place(loc: Sequence[str | int], arranged: Arranged | None) -> tuple[str, str]:
    """The control a spec location concerns, and how to name the place within it ("line 2: ").
    `arranged` None: the YAML text area (every location named by its path)."""
    parts = _untagged(loc)
    if arranged is None:
        return YAML, f"{_path(parts) or '(the spec)'}: "
    if not parts:
        return TOP, ""
    head, rest = parts[0], parts[1:]
    if head == "readiness":
        control = f"readiness_{rest[0]}" if rest else "readiness_type"
        if control == "readiness_test" and len(rest) > 1 and isinstance(rest[1], int):
            return control, _line(arranged, control, rest[1])
        return (control, "") if control in CONTROLS else ("readiness_type", "")
    if head == "loading_page":  # the spec's own check of the template's folder: no field
        control = f"{head}_{rest[0]}" if rest else "loading_page_template"
        return (control, "") if control in CONTROLS else (TOP, f"{_path(parts)}: ")
    if head in ("limits", "access"):
        control = f"{head}_{rest[0]}" if rest else ""
        return (control, "") if control in CONTROLS else (TOP, f"{_path(parts)}: ")
    if head in LINES:
        if rest and isinstance(rest[0], int):
            return str(head), _line(arranged, str(head), rest[0])
        return str(head), f"{rest[0]}: " if rest else ""
    if head in CONTROLS:
        return str(head), ""
    return TOP, f"{_path(parts)}: "


def _untagged(loc: Sequence[str | int]) -> list[str | int]:
    """`loc` without pydantic's union tags (`readiness.tcp.port` is `readiness.port`)."""
    parts = list(loc)
    if parts[:1] == ["readiness"] and len(parts) > 1 and parts[1] in PROBE_TYPES:
        del parts[1]
    if parts[:1] == ["volumes"] and len(parts) > 2 and parts[2] in ("bind", "volume"):
        del parts[2]
    return parts


def _line(arranged: Arranged, control: str, index: int) -> str:
    numbers = arranged.lines.get(control, [])
    return f"line {numbers[index]}: " if index < len(numbers) else f"item {index + 1}: "


def _loc_of(spec_path: str) -> list[str | int]:
    """`volumes[0].source` as a location (`["volumes", 0, "source"]`)."""
    loc: list[str | int] = []
    for part in spec_path.split("."):
        name, *indexes = part.split("[")
        loc.append(name)
        loc += [int(i.rstrip("]")) for i in indexes if i.rstrip("]").isdigit()]
    return loc


def add_validation(exc: ValidationError, arranged: Arranged | None, problems: Problems) -> None:
    """Every validation error beside its control."""
    for error in exc.errors():
        control, where = place(error["loc"], arranged)
        message = str(error["msg"]).removeprefix(_VALUE_ERROR)
        problems.add(control, f"{where}{message}")


def add_violations(found: Sequence[Violation], arranged: Arranged | None, p: Problems) -> None:
    """Every launch-policy violation beside its control."""
    for violation in found:
        control, where = place(_loc_of(violation.field), arranged)
        p.add(control, f"{where}{violation.message}")


def add_refusal(exc: WakeDockError, arranged: Arranged | None, problems: Problems) -> None:
    """What the services layer refused, beside the control it names (`extra["field"]`, or the
    name for a name already taken), else at the top."""
    if isinstance(exc, PolicyRefused):
        add_violations(exc.violations, arranged, problems)
        return
    fields = exc.extra.get("fields")
    named = (
        exc.extra.get("field")
        or (fields[0] if isinstance(fields, list) and len(fields) == 1 else None)
        or ("name" if exc.code == "service_exists" else None)
    )
    if isinstance(named, str):
        control, where = place(_loc_of(named), arranged)
        # A detail that already names its place ("env.TOKEN: ...") is not named twice.
        problems.add(control, exc.detail if exc.detail.startswith(named) else where + exc.detail)
        return
    problems.add(TOP, exc.detail)


# What a field that failed validation is replaced with, when required, so that the launch
# policy can still judge the rest of the spec in the same round.
_STAND_INS: dict[str, Any] = {
    "name": "stand-in",
    "image": "stand-in",
    "readiness": {"type": "tcp", "port": 1},
}


def judged_apart(data: Mapping[str, Any], exc: ValidationError) -> ServiceSpec | None:
    """The spec without the fields that failed validation (the required ones stood in for):
    what the launch policy can still judge while those are fixed. None if even that fails."""
    failed = {error["loc"][0] for error in exc.errors() if error["loc"]}
    kept = {key: value for key, value in data.items() if key not in failed}
    for key, stand_in in _STAND_INS.items():
        kept.setdefault(key, stand_in)
    try:
        return ServiceSpec.model_validate(kept)
    except ValidationError:
        return None
