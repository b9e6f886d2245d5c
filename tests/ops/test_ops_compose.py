"""docker-compose.yml without a Docker engine: valid against the compose specification, every
variable documented and read by settings, every service shaped as the deployment needs, and
every service's command accepted by the command-line parser it will meet in the container."""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import pytest

from aidetect.settings import Settings
from tests.ops.compose import (
    COMPOSE_FILE,
    MissingVariable,
    command_of,
    container_environment,
    dockerfile_stages,
    image_kind,
    interpolate,
    load_compose,
    passed_through_variables,
    read_env_example,
    referenced_variables,
)

SECRETS = {"POSTGRES_PASSWORD": "0123abcd", "REDIS_PASSWORD": "4567efgh", "FLOWER_BASIC_AUTH": "admin:89abcdef"}
LONG_RUNNING = {"postgres", "redis", "worker", "worker-cpu", "trainer", "beat", "flower", "crawler", "metrics"}
ONE_SHOT = {"migrate", "producer"}


def settings_variables() -> dict[str, str]:
    """Environment variable -> settings field, for every field of aidetect.settings.Settings."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names[str(choices[0])] = field_name
        else:
            names[f"AIDETECT_{field_name.upper()}"] = field_name
    return names


def project_env(with_documented_defaults: bool = False) -> dict[str, str]:
    """What compose interpolates from: .env made from .env.example with the secrets filled in."""
    set_values, documented = read_env_example()
    env = {**(documented if with_documented_defaults else {}), **set_values, **SECRETS}
    return {k: v for k, v in env.items() if v != "" or k in set_values}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw, project_env())


def compose_spec_schema() -> dict[str, Any]:
    """The compose-spec schema that check-jsonschema (test extra) ships."""
    from importlib.resources import files

    import check_jsonschema

    schema = files(check_jsonschema).joinpath("builtin_schemas", "vendor", "compose-spec.json")
    return json.loads(schema.read_text())


@pytest.mark.parametrize("documented_defaults", [False, True], ids=["as-shipped", "every-default-set"])
def test_compose_file_is_valid_against_the_compose_specification(raw: dict[str, Any],
                                                                 documented_defaults: bool) -> None:
    import jsonschema

    document = interpolate(raw, project_env(with_documented_defaults=documented_defaults))
    validator = jsonschema.Draft202012Validator(compose_spec_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20])


def test_secrets_are_required_and_never_written_in_the_file(raw: dict[str, Any]) -> None:
    for secret in SECRETS:
        env = {**project_env(), secret: ""}
        with pytest.raises(MissingVariable, match=secret):
            interpolate(raw, env)
    text = COMPOSE_FILE.read_text()
    for value in SECRETS.values():
        assert value not in text
    set_values, _ = read_env_example()
    assert all(set_values[secret] == "" for secret in SECRETS), ".env.example must not ship a usable secret"


def test_every_variable_is_documented_and_every_setting_reachable(raw: dict[str, Any]) -> None:
    set_values, documented = read_env_example()
    in_example = set(set_values) | set(documented)
    used = referenced_variables(raw) | passed_through_variables(raw)
    assert used - in_example == set(), "used by docker-compose.yml, missing in .env.example"

    settings = settings_variables()
    aidetect_vars = {name for name in used | in_example if name.startswith("AIDETECT_")}
    assert aidetect_vars - set(settings) == set(), "AIDETECT_* variables that aidetect/settings.py does not read"
    tunable = {name for name in settings if name.startswith("AIDETECT_")}
    assert tunable - in_example == set(), "settings missing in .env.example"
    assert tunable - passed_through_variables(raw) == set(), "settings docker-compose.yml does not pass through"
    # Only these compose-level variables may be read by something other than our settings.
    assert {"DATABASE_URL", "REDIS_URL"} <= set(settings)


def test_documented_defaults_are_the_settings_defaults(raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _, documented = read_env_example()
    settings = settings_variables()
    defaults = Settings.model_construct()
    for variable, text in documented.items():
        if variable not in settings or variable in ("DATABASE_URL", "REDIS_URL"):
            continue
        monkeypatch.setenv(variable, text)
        field = settings[variable]
        parsed = getattr(Settings(), field) if text != "" else None
        assert parsed == getattr(defaults, field), f"{variable}={text!r} in .env.example, default differs"
        monkeypatch.delenv(variable)
    # Defaults written into the compose file itself (${AIDETECT_X:-default}) match settings too.
    compose_defaults = interpolate(raw, {**SECRETS})
    worker_command = command_of(compose_defaults["services"]["worker"])
    concurrency = worker_command[worker_command.index("--concurrency") + 1]
    assert int(concurrency) == defaults.worker_concurrency


def test_containers_get_valid_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every aidetect container's environment, with every documented default set in .env, parses."""
    full = interpolate(load_compose(), project_env(with_documented_defaults=True))
    for name, service in full["services"].items():
        if image_kind(service) is None:
            continue
        environment = container_environment(service, project_env(with_documented_defaults=True))
        for key in [k for k in os.environ if k.startswith("AIDETECT_") or k in ("DATABASE_URL", "REDIS_URL")]:
            monkeypatch.delenv(key)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.redis_url_plain.startswith("redis://:4567efgh@redis:6379/"), name
        if "DATABASE_URL" in environment:
            assert settings.database_url_plain == "postgresql://aidetect:0123abcd@postgres:5432/aidetect", name
    cpu = container_environment(compose["services"]["worker-cpu"], project_env())
    assert cpu["AIDETECT_BACKEND"] == "auto" and cpu["AIDETECT_DEVICE"] == "cpu"


def _has_flag(command: list[str], *flags: str) -> bool:
    return any(flag in command for flag in flags)


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_services_are_shaped_for_the_deployment(compose: dict[str, Any], raw: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == LONG_RUNNING | ONE_SHOT

    postgres = services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])

    assert command_of(services["migrate"]) == ["aidetect", "db", "upgrade"] and services["migrate"]["restart"] == "no"
    for name in ("worker", "worker-cpu", "trainer", "beat", "crawler", "metrics", "producer"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name

    worker = command_of(services["worker"])
    assert worker[:4] == ["celery", "-A", "worker", "worker"] and worker[worker.index("-Q") + 1] == "detect"
    assert "${AIDETECT_WORKER_CONCURRENCY" in " ".join(raw["services"]["worker"]["command"])
    assert [d["driver"] for d in _gpu_devices(services["worker"])] == ["nvidia"]
    assert _gpu_devices(services["worker"])[0]["capabilities"] == ["gpu"]

    for name in ("worker", "worker-cpu"):  # models the trainer writes are readable at the same paths
        mounts = {v.split(":")[1]: v.split(":")[2:] for v in services[name]["volumes"]}
        assert mounts["/runs"] == ["ro"] and mounts["/checkpoints"] == ["ro"], name
    assert services["worker-cpu"]["profiles"] == ["cpu"] and not _gpu_devices(services["worker-cpu"])
    assert image_kind(services["worker-cpu"]) == "cpu"

    trainer = command_of(services["trainer"])
    assert trainer[:4] == ["celery", "-A", "training", "worker"] and trainer[trainer.index("-Q") + 1] == "training"
    assert trainer[trainer.index("--concurrency") + 1] == "1" and _gpu_devices(services["trainer"])
    assert {v.split(":")[1] for v in services["trainer"]["volumes"]} >= {"/data", "/checkpoints", "/runs"}

    assert command_of(services["beat"])[3] == "beat"
    crawler = command_of(services["crawler"])
    assert crawler[:4] == ["celery", "-A", "producer.crawl", "worker"] and crawler[crawler.index("-Q") + 1] == "crawl"

    flower = command_of(services["flower"])
    assert flower[3] == "flower" and any(a.startswith("--max_tasks=") for a in flower)
    assert "--persistent=True" in flower and any(a.startswith("--db=/var/lib/flower/") for a in flower)
    assert raw["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert any(v.endswith(":/var/lib/flower") for v in services["flower"]["volumes"])

    assert services["producer"]["profiles"] == ["producer"]
    assert command_of(services["metrics"])[:3] == ["aidetect", "metrics", "serve"]


def test_every_worker_sends_events_and_every_service_is_watched(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        command = command_of(service) if image_kind(service) else []
        if command[:1] == ["celery"] and "worker" in command[2:4]:
            assert "-E" in command, f"{name}: Flower needs events (-E)"
            assert _has_flag(command, "-n"), f"{name}: a node name per container (-n name@%h)"
        if name in LONG_RUNNING:
            assert not service["healthcheck"].get("disable"), name
            assert service.get("restart") == "unless-stopped", name
        if image_kind(service):
            assert service["build"]["dockerfile"] == "docker/Dockerfile", name
            assert service["image"].endswith(f"-{image_kind(service)}"), name
            assert service.get("cap_drop") == ["ALL"] and service.get("init") is True, name
    targets = {image_kind(s) for s in compose["services"].values()} - {None}
    assert targets <= set(dockerfile_stages())
    for ports in (s.get("ports", []) for s in compose["services"].values()):
        assert all(p.startswith("127.0.0.1:") for p in ports), "published on loopback unless .env says otherwise"


def _parse_celery(args: list[str]) -> None:
    """Parse a celery command line the way the celery CLI does, without running it."""
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_cli

    from aidetect.celery_app import app

    # The option callbacks read defaults from the app, as the real CLI does once it loaded one.
    ctx = celery_cli.make_context("celery", list(args), obj=CLIContext(app=app, no_color=True, workdir=None))
    name, command, rest = celery_cli.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    assert command is not None, f"celery has no command {name!r}"
    if name == "flower":
        from flower.options import options  # noqa: F401  (defines Flower's options)
        from tornado.options import options as tornado_options

        for arg in rest:
            assert arg.startswith("--") and "=" in arg, f"flower option {arg!r}: use --name=value"
            key, value = arg[2:].split("=", 1)
            option = tornado_options._options[key.replace("_", "-")]
            option.parse(value)
        return
    command.make_context(name, list(rest), parent=ctx)


def test_celery_commands_parse(compose: dict[str, Any]) -> None:
    commands = {name: command_of(s) for name, s in compose["services"].items()
                if image_kind(s) and command_of(s)[:1] == ["celery"]}
    assert set(commands) == {"worker", "worker-cpu", "trainer", "beat", "flower", "crawler"}
    for name, command in commands.items():
        try:
            _parse_celery(command[1:])
        except Exception as exc:
            raise AssertionError(f"{name}: {shlex.join(command)}: {exc}") from exc


AIDETECT_EXAMPLES = [["db", "upgrade"], ["metrics", "serve", "--host", "0.0.0.0", "--port", "9808"],
                     ["metrics", "serve", "--scope", "local", "--multiproc-dir", "/run/prometheus"],
                     ["status", "--format", "json"], ["enqueue", "/input/urls.txt"],
                     ["enqueue", "--rescore", "/input/urls.txt"], ["crawl", "https://example.org/"],
                     ["results", "--label", "ai", "--format", "csv"], ["models", "promote", "7"]]


def _parse_aidetect(args: list[str]) -> None:
    import typer.main

    import cli.main

    cli.main._mount()
    command: Any = typer.main.get_command(cli.main.app)
    ctx = command.make_context("aidetect", list(args))
    rest = [*ctx._protected_args, *ctx.args]
    while rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"aidetect has no command {name!r}"
        ctx = sub.make_context(name, list(rest), parent=ctx)
        command, rest = sub, [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not hasattr(command, "resolve_command"):
            break


@pytest.mark.parametrize("args", [*AIDETECT_EXAMPLES, "compose"],
                         ids=lambda a: a if isinstance(a, str) else " ".join(a))
def test_aidetect_commands_parse(args: list[str] | str, compose: dict[str, Any]) -> None:
    """The aidetect commands of the compose file and of docs/operations.md, as cli/main.py mounts them."""
    if args == "compose":
        for service in compose["services"].values():
            command = command_of(service)
            if command[:1] == ["aidetect"] and command[1:] != ["--help"]:
                _parse_or_explain(command[1:])
        return
    _parse_or_explain(args)  # type: ignore[arg-type]


def _parse_or_explain(args: list[str]) -> None:
    try:
        _parse_aidetect(args)
    except Exception as exc:  # typer's usage errors: say which command line, and why
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise AssertionError(f"`aidetect {shlex.join(args)}` is refused by cli/main.py: {message}") from exc
