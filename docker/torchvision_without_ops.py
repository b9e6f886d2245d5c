"""Lets ``import torchvision`` work when its C++ operators cannot load.

Installed into the cpu image only when the torchvision wheel the build found does not import
with the installed torch (docker/Dockerfile): offline, the only torchvision at hand may be the
CUDA build, whose ``_C`` library needs CUDA's. timm imports torchvision's Python layers, and
torchvision registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` at import,
which fails while those operators are undefined. This defines their schemas (no kernels) right
before torchvision is first imported; calling them still raises, nothing in aidetect does.
"""

from __future__ import annotations

import importlib.abc
import sys

SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_libraries: list[object] = []  # a Library's definitions live as long as the object


class _DefineBeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch

            library = torch.library.Library("torchvision", "FRAGMENT")
            for schema in SCHEMAS:
                library.define(schema)
            _libraries.append(library)
        return None  # the regular finders import it


sys.meta_path.insert(0, _DefineBeforeTorchvision())
