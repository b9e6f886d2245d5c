"""Which images the benchmark serves: a seeded sample of the realfake corpus (read in place, never copied)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = (REPO_ROOT.parent / "shared" / "datasets" / "realfake").resolve()


@dataclass(frozen=True)
class BenchImage:
    path: Path
    format: str  # as the manifest says (JPEG, PNG, WEBP, MPO, TIFF)


def pick_images(root: Path, n: int, seed: int = 0) -> list[BenchImage]:
    """``n`` images of the corpus at ``root`` in a seeded random order (all of them when ``n`` is larger)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"no manifest.csv under {root}")
    with manifest.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    random.Random(seed).shuffle(rows)
    return [BenchImage(root / row["path"], row.get("orig_format") or "") for row in rows[: max(0, n)]]
