"""Medians, ratios, targets and the printed table of a benchmark run."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TARGETS = {
    "e2e_vs_naive": 3.0,  # end-to-end >= 3x the naive baseline
    "e2e_vs_slowest_stage": 0.8,  # end-to-end >= 0.8x the lower of decode-bound and model-bound
    "onnx_vs_torch_model": 1.5,  # ONNX model-only >= 1.5x torch eager model-only
}


def medians(reps: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of every rate over the repetitions."""
    keys = sorted({k for rep in reps for k in rep})
    return {k: statistics.median(rep[k] for rep in reps if k in rep) for k in keys}


def ratios(med: Mapping[str, float], e2e_backend: str) -> dict[str, float]:
    out: dict[str, float] = {}
    e2e = med.get(f"e2e_{e2e_backend}")
    if e2e and med.get("naive"):
        out["e2e_vs_naive"] = e2e / med["naive"]
    stage = min((v for k, v in med.items() if k in ("decode_bound", f"model_{e2e_backend}")), default=None)
    if e2e and stage:
        out["e2e_vs_slowest_stage"] = e2e / stage
    model = med.get(f"model_{e2e_backend}")
    if e2e and model and med.get("decode_bound"):  # informational: decode and model share the same cores
        out["e2e_vs_shared_core_bound"] = e2e * (1 / med["decode_bound"] + 1 / model)
    if med.get("model_onnx") and med.get("model_torch"):
        out["onnx_vs_torch_model"] = med["model_onnx"] / med["model_torch"]
    return out


def targets(rat: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    return {name: {"target": goal, "measured": round(rat[name], 3), "reached": rat[name] >= goal}
            for name, goal in TARGETS.items() if name in rat}


def machine() -> dict[str, Any]:
    """What the figures came from."""
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import onnxruntime
    import torch

    return {"host": platform.node(), "cpu": cpu, "cores_usable": cores, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "cuda": torch.cuda.is_available()}


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


LABELS = {
    "decode_bound": "decode-bound (fetch + decode + preprocess, worker threads)",
    "naive": "naive baseline (1 task/URL, urllib, full decode, torch batch 1)",
}


def _label(key: str) -> str:
    if key.startswith("e2e_"):
        return f"end-to-end, worker backend {key[4:]} (first enqueue -> last verdict)"
    if key.startswith("model_"):
        backend, _, batch = key[6:].partition("_batch")
        at = f"batch {batch}" if batch else "worker's forward batch"
        return f"model-bound, backend {backend} (detector alone, {at})"
    return LABELS.get(key, key)


def table(result: Mapping[str, Any]) -> str:
    """The human-readable summary printed at the end of a run."""
    med, reps = result["median"], result["reps"]
    lines = [f"machine: {result['machine']['cpu']} ({result['machine']['cores_usable']} usable cores), "
             f"load average {result['load']['before']:.1f} before, {result['load']['max_during']:.1f} max during",
             f"images: {result['config']['n']} from {result['config']['dataset']}, batch size "
             f"{result['config']['batch_size']}, {len(reps)} repetition(s), medians in images/s", ""]
    width = max(len(_label(k)) for k in med)
    lines.append(f"{'stage':<{width}}  {'median':>8}  runs")
    for key in med:
        runs = ", ".join(f"{rep[key]:.1f}" for rep in reps if key in rep)
        lines.append(f"{_label(key):<{width}}  {med[key]:>8.1f}  {runs}")
    lines.append("")
    for name, rss in result["peak_rss_mib"].items():
        lines.append(f"peak RSS {name}: {rss:.0f} MiB")
    if "e2e_vs_shared_core_bound" in result["ratios"]:
        lines.append(f"end-to-end / (1 / (1/decode-bound + 1/model-bound)), the bound when both share the cores: "
                     f"{result['ratios']['e2e_vs_shared_core_bound']:.2f}")
    for name, info in result["targets"].items():
        verdict = "reached" if info["reached"] else "NOT reached"
        lines.append(f"{name}: {info['measured']:.2f}x (target {info['target']}x) {verdict}")
    return "\n".join(lines)
