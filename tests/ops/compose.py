"""Reading docker-compose.yml and .env.example the way docker compose does, without a Docker engine.

Interpolation follows the compose specification: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}`` (no nesting:
the file does not use it). ``.env`` lines are ``NAME=value``; in .env.example ``#NAME=value``
documents a variable left at its default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"

_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)
_ENV_LINE = re.compile(r"^(?P<commented>#)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` whose variable is unset (or empty)."""


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as YAML data (anchors and ``<<`` merges resolved), before interpolation."""
    return yaml.safe_load(path.read_text())


def read_env_example(path: Path = ENV_EXAMPLE) -> tuple[dict[str, str], dict[str, str]]:
    """(variables set in the file, variables documented with their default in comments)."""
    set_values: dict[str, str] = {}
    documented: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            (documented if match["commented"] else set_values)[match["name"]] = match["value"]
    return set_values, documented


def _substitute(match: re.Match[str], env: dict[str, str]) -> str:
    if match["escaped"]:
        return "$"
    if match["named"]:
        return env.get(match["named"], "")
    braced = _BRACED.fullmatch(match["braced"])
    if braced is None:
        raise ValueError(f"invalid interpolation: {match.group(0)}")
    name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
    value = env.get(name)
    present = value is not None
    non_empty = bool(value)
    if op is None:
        return value or ""
    if op in (":-", "-"):
        return value if (non_empty if op == ":-" else present) else arg  # type: ignore[return-value]
    if op in (":?", "?"):
        if not (non_empty if op == ":?" else present):
            raise MissingVariable(f"{name}: {arg}")
        return value  # type: ignore[return-value]
    return arg if (non_empty if op == ":+" else present) else ""


def interpolate(data: Any, env: dict[str, str]) -> Any:
    """``data`` with every string value interpolated from ``env`` (keys are left alone, as compose does)."""
    if isinstance(data, str):
        return _REFERENCE.sub(lambda m: _substitute(m, env), data)
    if isinstance(data, dict):
        return {key: interpolate(value, env) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(value, env) for value in data]
    return data


def referenced_variables(data: Any) -> set[str]:
    """Every variable the file interpolates somewhere."""
    found: set[str] = set()
    if isinstance(data, str):
        for match in _REFERENCE.finditer(data):
            if match["named"]:
                found.add(match["named"])
            elif match["braced"]:
                found.add(_BRACED.fullmatch(match["braced"])["name"])  # type: ignore[index]
    elif isinstance(data, dict):
        for value in data.values():
            found |= referenced_variables(value)
    elif isinstance(data, list):
        for value in data:
            found |= referenced_variables(value)
    return found


def passed_through_variables(compose: dict[str, Any]) -> set[str]:
    """Environment keys without a value: compose passes the variable of that name through."""
    names: set[str] = set()
    for service in compose["services"].values():
        environment = service.get("environment") or {}
        if isinstance(environment, dict):
            names |= {key for key, value in environment.items() if value is None}
        else:
            names |= {entry for entry in environment if "=" not in entry}
    return names


def container_environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The environment a service's container gets (after interpolation, pass-through resolved)."""
    environment = service.get("environment") or {}
    resolved: dict[str, str] = {}
    for key, value in environment.items():
        if value is None:
            if key in env:
                resolved[key] = env[key]
        else:
            resolved[key] = str(value)
    return resolved


def command_of(service: dict[str, Any]) -> list[str]:
    """Entrypoint (ours, which execs its arguments, is left out) plus command, as a list."""
    entrypoint = service.get("entrypoint") or []
    command = service.get("command") or []
    if isinstance(command, str) or isinstance(entrypoint, str):
        raise AssertionError("use the list form for entrypoint and command (no shell)")
    if entrypoint[:1] == ["aidetect-entrypoint"]:
        entrypoint = entrypoint[1:]
    return [*entrypoint, *command]


def image_kind(service: dict[str, Any]) -> str | None:
    """light, cpu or gpu for our images (the build target), None for third-party ones."""
    build = service.get("build")
    return build["target"] if isinstance(build, dict) else None


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, list[str]]:
    """Instructions of each ``FROM ... AS name`` stage (continuation lines joined, comments dropped)."""
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        words = logical.split()
        if words[0].upper() == "FROM":
            name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        if current is not None:
            current.append(logical)
        logical = ""
    return stages
