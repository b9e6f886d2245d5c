"""Print the pip requirements of one image, read from pyproject.toml (the one list of dependencies).

    python docker/requirements.py light pyproject.toml   # producer, crawler, beat, flower, migrate, metrics
    python docker/requirements.py cpu pyproject.toml     # ONNX detect worker (torch comes from the CPU index)
    python docker/requirements.py gpu pyproject.toml     # CUDA detect worker and trainer
    python docker/requirements.py torch pyproject.toml   # torch and torchvision alone (for another index)

The light image installs these and then the package itself with ``pip install --no-deps``,
so it never pulls torch. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# The model runtime: only the worker and trainer images carry it.
HEAVY = frozenset({"torch", "torchvision", "timm", "safetensors", "numpy", "onnxruntime"})
TORCH = frozenset({"torch", "torchvision"})

EXTRAS = {
    "light": ("crawl", "metrics", "flower"),
    "cpu": ("onnx", "metrics"),
    "gpu": ("onnx", "metrics", "train", "hub"),
    "torch": (),
}


def requirement_name(requirement: str) -> str:
    """The normalised project name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(image: str, pyproject: Path) -> list[str]:
    """The requirement lines of ``image`` (``light``, ``cpu``, ``gpu`` or ``torch``)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS[image]:
        lines += project["optional-dependencies"][extra]
    if image == "light":
        lines = [line for line in lines if requirement_name(line) not in HEAVY]
    elif image == "torch":
        lines = [line for line in lines if requirement_name(line) in TORCH]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in EXTRAS:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(requirements(argv[1], Path(argv[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
