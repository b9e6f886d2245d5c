"""What each image can import, checked in this checkout without building it.

One subprocess (started in the background when the ops tests begin, since importing the
detect worker loads torch and timm) does two things:

1. With every installed distribution *outside* the light image hidden (the light requirement set
   of ``docker/requirements.py`` and what it pulls in), it loads the light services' app modules
   and the ``aidetect`` CLI, as the light image would: optional imports fall back, required ones
   fail. It records whether torch got imported.
2. With everything visible again, it loads the worker and trainer app modules.

For each app module it reports the task names the app registers and the beat schedule.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

LIGHT_APPS = ("aidetect.celery_app", "producer.crawl")
HEAVY_APPS = ("worker", "training")
# Everything else the light services import: the CLI, the exporter, Flower, migrations.
LIGHT_MODULES = ("aidetect.queues", "aidetect.metrics", "cli.status", "cli.metrics_cmd", "db.migrate",
                 "producer.enqueue", "producer.sender", "flower.command")


def requirements_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("docker_requirements", REPO_ROOT / "docker" / "requirements.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> set[str]:
    """Installed distributions these requirements pull in (extras followed), by normalised name."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        key = (normalise(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dependencies = md.requires(requirement.name) or []
        except md.PackageNotFoundError:
            continue
        environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
        for line in dependencies:
            dependency = Requirement(line)
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in environments):
                pending.append(dependency)
    return {name for name, _ in seen}


def light_distributions() -> list[str]:
    """Distributions the light image holds: its requirement set's closure, plus our package (--no-deps)."""
    requirements = requirements_script().requirements("light", REPO_ROOT / "pyproject.toml")
    return sorted(closure(requirements) | {"aidetect"})


CHECK = r"""
import importlib, importlib.metadata as md, json, re, sys, traceback
from celery.app.utils import find_app
allowed, light_apps, light_modules, heavy_apps = (json.loads(a) for a in sys.argv[1:5])
owners = md.packages_distributions()
def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()
class OutsideTheLightImage:
    def find_spec(self, name, path=None, target=None):
        dists = owners.get(name.split(".")[0])
        if dists and not any(normalise(d) in allowed for d in dists):
            raise ModuleNotFoundError(f"No module named {name!r} in the light image (distribution {dists})",
                                      name=name)
        return None
def error(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
def load(module):
    try:
        app = find_app(module, imp=importlib.import_module)
    except Exception as exc:
        try:  # find_app hides why <package>.celery failed to import: ask it directly
            importlib.import_module(module + ".celery")
        except ModuleNotFoundError as inner:
            if inner.name != module + ".celery":
                return {"error": error(inner)}
        except Exception as inner:
            return {"error": error(inner)}
        return {"error": error(exc)}
    return {"tasks": sorted(t for t in app.tasks if not t.startswith("celery.")),
            "beat": sorted(e["task"] for e in (app.conf.beat_schedule or {}).values())}
report = {"light_errors": {}}
blocker = OutsideTheLightImage()
sys.meta_path.insert(0, blocker)
for module in light_apps:
    report[module] = load(module)
for module in light_modules:
    try:
        importlib.import_module(module)
    except Exception as exc:
        report["light_errors"][module] = error(exc)
try:
    import cli.main
    cli.main._mount()
except Exception as exc:
    report["light_errors"]["cli.main"] = error(exc)
report["torch_in_light"] = "torch" in sys.modules
sys.meta_path.remove(blocker)
for module in heavy_apps:
    report[module] = load(module)
print(json.dumps(report))
"""


class ImageCheck:
    """The check subprocess, started at once; ``result()`` waits for it (bounded)."""

    def __init__(self, log_dir: Path, python: str, env: dict[str, str]) -> None:
        self.out = log_dir / "images.json"
        self.err = log_dir / "images.err"
        args = [json.dumps(light_distributions()), json.dumps(LIGHT_APPS), json.dumps(LIGHT_MODULES),
                json.dumps(HEAVY_APPS)]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen([python, "-c", CHECK, *args], env=env, cwd=REPO_ROOT, stdout=out,
                                            stderr=err, start_new_session=True)
        self._result: dict[str, Any] | None = None

    def result(self, timeout_s: float = 240) -> dict[str, Any]:
        if self._result is None:
            returncode = self.process.wait(timeout=timeout_s)
            assert returncode == 0, self.err.read_text()[-3000:]
            self._result = json.loads(self.out.read_text().strip().splitlines()[-1])
        return self._result

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
