"""The arrows of ARCHITECTURE.md, kept true: each package and every one of its modules is imported in a fresh
interpreter, and what that loaded (``sys.modules``) is checked against what the package may import.

A module whose import loads a forbidden package is named together with it, e.g.
``producer.crawl.tasks loaded torch (producer never imports torch)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import REPO_ROOT

OURS = frozenset({"aidetect", "fetch", "detector", "db", "producer", "worker", "training", "cli", "bench", "tests"})


@dataclass(frozen=True)
class Rule:
    """What a package may load: ``ours`` (our packages, itself included; None: any) and none of ``never``."""

    ours: frozenset[str] | None
    never: frozenset[str] = frozenset()
    why: str = ""


TORCH = frozenset({"torch", "torchvision", "timm"})
RULES: dict[str, Rule] = {
    "aidetect": Rule(frozenset({"aidetect"}), TORCH, "aidetect is the base: it imports nothing of ours, never torch"),
    "fetch": Rule(frozenset({"aidetect", "fetch"}), TORCH, "fetch imports no package of ours but aidetect"),
    "detector": Rule(frozenset({"aidetect", "detector"}), why="detector imports nothing of ours above it"),
    "db": Rule(frozenset({"aidetect", "db"}), TORCH, "db imports nothing of ours above it"),
    "producer": Rule(frozenset({"aidetect", "db", "fetch", "producer"}), TORCH,
                     "producer never imports torch, nor worker, training or detector (it sends tasks by name)"),
    "worker": Rule(frozenset({"aidetect", "db", "detector", "fetch", "worker"}),
                   why="worker does not import training, cli or producer"),
    "training": Rule(frozenset({"aidetect", "db", "detector", "fetch", "training"}),
                     why="training does not import worker, producer or cli (downloads go through fetch)"),
    "cli": Rule(None, why="cli may import everything"),
}

CHILD = r"""
import importlib, json, pkgutil, sys

def modules(name):
    module = importlib.import_module(name)
    yield name
    for info in sorted(pkgutil.iter_modules(getattr(module, "__path__", [])), key=lambda i: i.name):
        yield from modules(f"{name}.{info.name}")

report, before = {}, set(m.split(".")[0] for m in sys.modules)
order = []
try:
    for name in modules(sys.argv[1]):
        order.append(name)
        now = set(m.split(".")[0] for m in sys.modules)
        report[name] = sorted(now - before)
        before = now
except Exception as exc:
    print(json.dumps({"error": f"importing {order[-1] if order else sys.argv[1]}: {type(exc).__name__}: {exc}"}))
    raise SystemExit(0)
print(json.dumps({"loaded": report}))
"""


def imported_by_module(package: str) -> dict[str, list[str]]:
    """Each module of ``package`` (in import order) -> the top-level packages its import loaded first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", CHILD, package], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, f"{package}: {result.get('error')}"
    return result["loaded"]


def violations(package: str, loaded: dict[str, list[str]], rule: Rule) -> list[str]:
    found = []
    for module, names in loaded.items():
        for name in names:
            ours_forbidden = rule.ours is not None and name in OURS and name not in rule.ours
            if ours_forbidden or name in rule.never:
                found.append(f"{module} loaded {name} ({rule.why})")
    return found


@pytest.mark.timeout(330)
@pytest.mark.parametrize("package", sorted(RULES))
def test_each_package_imports_only_what_the_architecture_allows(package: str) -> None:
    loaded = imported_by_module(package)
    assert len(loaded) > 1, f"{package}: no modules found: {loaded}"
    found = violations(package, loaded, RULES[package])
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_a_forbidden_import_is_named_with_its_module() -> None:
    rule = RULES["producer"]
    found = violations("producer", {"producer.x": ["json"], "producer.crawl.y": ["worker", "torch"]}, rule)
    assert found == [f"producer.crawl.y loaded worker ({rule.why})", f"producer.crawl.y loaded torch ({rule.why})"]
