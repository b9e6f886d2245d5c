"""Medians, ratios, targets and the printed table of a benchmark run."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS = {  # ratios of the default path (its end-to-end rate) that should reach at least this much
    "e2e_vs_naive_loop": 3.0,  # >= 3x the naive single-process loop
    "e2e_vs_shared_core_bound": 0.8,  # >= 0.8x 1 / (1/decode-bound + 1/model-bound)
    "onnx_vs_torch_model": 1.5,  # ONNX model-only >= 1.5x torch eager model-only
}
MAX_WORKER_RSS_MIB = 800.0  # the default CPU worker, main and pool processes summed


@dataclass(frozen=True)
class Default:
    """The keys of the default path: its end-to-end rate, its model-bound rate, its worker."""

    e2e: str  # e.g. e2e_auto
    model: str  # the backend auto resolved to, e.g. model_onnx
    worker: str  # e.g. worker_auto


def medians(reps: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of every rate over the repetitions."""
    keys = sorted({k for rep in reps for k in rep})
    return {k: statistics.median(rep[k] for rep in reps if k in rep) for k in keys}


def shared_core_bound(decode: float, model: float) -> float:
    """What a perfect pipeline reaches when decoding and the model take turns on the same cores."""
    return 1 / (1 / decode + 1 / model)


def ratios(med: Mapping[str, float], default: Default,
           per_cpu: Mapping[str, float] | None = None) -> dict[str, float]:
    """The default path's end-to-end rate against the baselines and bounds (and ONNX against torch); with
    ``per_cpu`` (images per CPU-second), the same against the naive loop per CPU-second, which a loaded machine
    distorts much less than wall-clock rates measured minutes apart."""
    out: dict[str, float] = {}
    per_cpu = per_cpu or {}
    if per_cpu.get(default.e2e) and per_cpu.get("naive_loop"):
        out["e2e_vs_naive_loop_per_cpu_second"] = per_cpu[default.e2e] / per_cpu["naive_loop"]
    e2e = med.get(default.e2e)
    if e2e and med.get("naive_loop"):
        out["e2e_vs_naive_loop"] = e2e / med["naive_loop"]
    if e2e and med.get("naive"):
        out["e2e_vs_naive_tasks"] = e2e / med["naive"]
    model = med.get(default.model)
    if e2e and model and med.get("decode_bound"):
        out["e2e_vs_shared_core_bound"] = e2e / shared_core_bound(med["decode_bound"], model)
    stage = min((v for k, v in med.items() if k in ("decode_bound", default.model)), default=None)
    if e2e and stage:  # informational: the bound if decoding and the model ran on separate hardware
        out["e2e_vs_slowest_stage"] = e2e / stage
    if med.get("model_onnx") and med.get("model_torch"):
        out["onnx_vs_torch_model"] = med["model_onnx"] / med["model_torch"]
    if med.get("model_onnx-int8") and med.get("model_onnx"):  # informational: what the int8 graph buys
        out["int8_vs_float_onnx_model"] = med["model_onnx-int8"] / med["model_onnx"]
    return out


def targets(rat: Mapping[str, float], worker_rss_mib: float | None = None) -> dict[str, dict[str, Any]]:
    """Each target with what was measured; the RSS target is a ceiling, the others are floors."""
    out = {name: {"target": goal, "measured": round(rat[name], 3), "reached": rat[name] >= goal}
           for name, goal in TARGETS.items() if name in rat}
    if worker_rss_mib:
        out["default_worker_peak_rss_mib"] = {"target": MAX_WORKER_RSS_MIB, "measured": round(worker_rss_mib, 1),
                                              "reached": worker_rss_mib <= MAX_WORKER_RSS_MIB}
    return out


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
    "naive_loop": "naive loop (1 process: urllib, full decode, torch batch 1, commit per image)",
    "naive": "naive tasks (1 Celery task/URL, urllib, full decode, torch batch 1)",
}


def _label(key: str, default: Mapping[str, str] | None = None) -> str:
    if default and key == default["e2e"]:
        return f"DEFAULT end-to-end, worker backend {key[4:]} -> {default['model'][6:]}"
    if key.startswith("e2e_"):
        return f"end-to-end, worker backend {key[4:]} (first enqueue -> last verdict)"
    if key.startswith("model_"):
        backend, _, batch = key[6:].partition("_batch")
        at = f"batch {batch}" if batch else "worker's forward batch"
        return f"model-bound, backend {backend} (detector alone, {at})"
    return LABELS.get(key, key)


def _order(keys: Sequence[str], default: Mapping[str, str] | None) -> list[str]:
    """The default path first, then the other end-to-end rates, the naive baselines, then the stages."""
    rank = {"naive_loop": 2, "naive": 3, "decode_bound": 4}

    def key(name: str) -> tuple[int, str]:
        if default and name == default["e2e"]:
            return 0, name
        return (1 if name.startswith("e2e_") else rank.get(name, 5)), name

    return sorted(keys, key=key)


def table(result: Mapping[str, Any]) -> str:
    """The human-readable summary printed at the end of a run."""
    med, reps, default = result["median"], result["reps"], result.get("default")
    lines = [f"machine: {result['machine']['cpu']} ({result['machine']['cores_usable']} usable cores), "
             f"load average {result['load']['before']:.1f} before, {result['load']['max_during']:.1f} max during",
             f"images: {result['config']['n']} from {result['config']['dataset']}, batch size "
             f"{result['config']['batch_size']}, {len(reps)} repetition(s), medians in images/s", ""]
    width = max(len(_label(k, default)) for k in med)
    lines.append(f"{'stage':<{width}}  {'median':>8}  runs")
    for key in _order(list(med), default):
        runs = ", ".join(f"{rep[key]:.1f}" for rep in reps if key in rep)
        lines.append(f"{_label(key, default):<{width}}  {med[key]:>8.1f}  {runs}")
    per_cpu = result.get("images_per_cpu_second", {})
    if per_cpu:
        lines.append("")
        lines.append("images per CPU-second of the working processes (worker main + pool, or the loop; not Redis, "
                     "PostgreSQL or the image server):")
        lines.extend(f"  {_label(key, default)}: {per_cpu[key]:.1f}" for key in _order(list(per_cpu), default))
    lines.append("")
    per_process = result.get("peak_rss_per_process_mib", {})
    for name, rss in result["peak_rss_mib"].items():
        parts = ", ".join(f"{proc} {mib:.0f}" for proc, mib in per_process.get(name, {}).items())
        lines.append(f"peak RSS {name}: {rss:.0f} MiB" + (f" ({parts})" if parts else ""))
    lines.append("")
    rat = result["ratios"]
    if default and default["model"] in med and "decode_bound" in med:
        bound = shared_core_bound(med["decode_bound"], med[default["model"]])
        lines.append(f"shared-core bound 1 / (1/decode-bound + 1/{default['model']}): {bound:.1f} images/s")
    for name in ("e2e_vs_naive_loop", "e2e_vs_naive_loop_per_cpu_second", "e2e_vs_naive_tasks",
                 "e2e_vs_shared_core_bound", "e2e_vs_slowest_stage"):
        if name in rat:
            lines.append(f"default / {name.removeprefix('e2e_vs_')}: {rat[name]:.2f}x")
    for name, info in result["targets"].items():
        verdict = "reached" if info["reached"] else "NOT reached"
        if name.endswith("_rss_mib"):
            lines.append(f"target {name}: {info['measured']:.0f} MiB (at most {info['target']:.0f}) {verdict}")
        else:
            lines.append(f"target {name}: {info['measured']:.2f}x (at least {info['target']}x) {verdict}")
    return "\n".join(lines)
