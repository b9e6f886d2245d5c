"""Every service's app module loads in this checkout and registers the tasks of its queue; the
light (torch-free) image runs its services with only its own requirement set installed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.compose import command_of, image_kind, interpolate, load_compose
from tests.ops.images import LIGHT_APPS, ImageCheck


@pytest.fixture(scope="module")
def report(image_check: ImageCheck) -> dict[str, Any]:
    return image_check.result()


def test_light_services_run_on_the_light_requirements_without_torch(report: dict[str, Any]) -> None:
    """docker/requirements.py light + the package (--no-deps) is enough for the light image's services."""
    compose = interpolate(load_compose(), {"POSTGRES_PASSWORD": "x", "REDIS_PASSWORD": "x", "FLOWER_BASIC_AUTH": "x"})
    light_apps = {command_of(s)[2] for s in compose["services"].values()
                  if image_kind(s) == "light" and command_of(s)[:1] == ["celery"]}
    assert light_apps == set(LIGHT_APPS)
    errors = {**report["light_errors"], **{m: report[m]["error"] for m in LIGHT_APPS if "error" in report[m]}}
    assert errors == {}, "the light image could not import:\n" + "\n".join(f"{k}: {v}" for k, v in errors.items())
    assert report["torch_in_light"] is False


@pytest.mark.parametrize("module, queue_tasks", [
    ("aidetect.celery_app", set()),
    ("producer.crawl", {"producer.crawl_page", "producer.crawl_sweep"}),
    ("worker", {"worker.detect_batch", "worker.sweep_stuck"}),
    ("training", set()),
])
def test_every_app_module_loads_and_registers_its_tasks(report: dict[str, Any], module: str,
                                                        queue_tasks: set[str]) -> None:
    result = report[module]
    assert "error" not in result, f"celery -A {module}: {result.get('error')}"
    assert queue_tasks <= set(result["tasks"]), f"{module} registers {result['tasks']}"
    if module == "training":
        assert any(t.startswith("training.") for t in result["tasks"]), result["tasks"]


def test_every_task_beat_sends_is_registered_by_the_worker_of_its_queue(report: dict[str, Any]) -> None:
    """Beat sends the sweeps by name: the stuck-image sweep to the detect workers (queue ``control``), the
    stuck-page sweep to the crawl workers (queue ``crawl``)."""
    assert sorted(report["aidetect.celery_app"]["beat"]) == ["producer.crawl_sweep", "worker.sweep_stuck"]
    assert "worker.sweep_stuck" in report["worker"]["tasks"]
    assert "producer.crawl_sweep" in report["producer.crawl"]["tasks"]
