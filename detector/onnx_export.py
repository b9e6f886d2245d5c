"""Exporting a checkpoint to ONNX (needs torch and the ``onnx`` package); the ONNX backend runs the result.

``python -m detector.onnx_export CHECKPOINT_DIR TARGET.onnx`` is how :mod:`detector.onnx_backend` exports in a
child process when torch is not loaded in the worker, so that the worker itself never imports torch. It prints
one line and exits 3 when the checkpoint itself is at fault (CheckpointError), 4 when a package is missing
(ImportError), 2 for anything else.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import nn

from detector.checkpoint import checkpoint_sha256, load_checkpoint
from detector.config import ModelConfig
from detector.errors import CheckpointError, DetectorError
from detector.int8 import CHECKPOINT_KEY
from detector.model import DetectorNet

OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
CHECKPOINT_EXIT = 3  # the exit status of the command line when the checkpoint is at fault
IMPORT_EXIT = 4  # ... when a package the export needs (onnx) is missing


class StaticPadConv(nn.Module):
    """A TensorFlow "same" convolution with its padding fixed for one input size: exported as one Pad of fixed
    size (which :func:`finish_graph` then folds into the Conv) instead of a graph that computes the padding from
    the input's shape on every call."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv, self.pad = conv, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return F.conv2d(F.pad(x, self.pad), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def with_static_padding(model: nn.Module, size: int) -> nn.Module:
    """``model`` with every timm ``Conv2dSame`` replaced by a :class:`StaticPadConv` for ``size`` x ``size``
    inputs (the only size the detector feeds it); outputs are unchanged (tested)."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            sizes[name] = tuple(args[0].shape[-2:])

        return hook

    hooks = [module.register_forward_pre_hook(record(name))
             for name, module in model.named_modules() if isinstance(module, Conv2dSame)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, (height, width) in sizes.items():
        conv = model.get_submodule(name)
        parent_name, _, attr = name.rpartition(".")
        pad = pad_same_arg([height, width], conv.weight.shape[-2:], conv.stride, conv.dilation)
        setattr(model.get_submodule(parent_name), attr, StaticPadConv(conv, tuple(pad)))
    return model


def finish_graph(path: Path, pads: list[tuple[int, int, int, int]], sha256: str) -> None:
    """Fold each fixed padding into its convolution (ONNX Conv takes asymmetric pads: one op, and no copy of the
    feature map, 9% of the int8 graph's time before) and stamp the checkpoint hash, rewriting ``path``.

    The exporter writes the Pads in the order the convolutions run, the order of ``pads`` (``F.pad``'s
    ``(left, right, top, bottom)``); a graph that does not match keeps its Pads."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pad_nodes = [n for n in graph.node if n.op_type == "Pad"]
    convs = [consumers.get(n.output[0], []) for n in pad_nodes]
    if len(pad_nodes) == len(pads) and all(len(c) == 1 and c[0].op_type == "Conv" for c in convs):
        for pad_node, (conv,), (left, right, top, bottom) in zip(pad_nodes, convs, pads, strict=True):
            for attribute in [a for a in conv.attribute if a.name in ("pads", "auto_pad")]:
                conv.attribute.remove(attribute)
            conv.attribute.append(onnx.helper.make_attribute("pads", [top, left, bottom, right]))
            conv.input[0] = pad_node.input[0]
            graph.node.remove(pad_node)
        _drop_unused(graph)
    onnx.helper.set_model_props(model, {CHECKPOINT_KEY: sha256})
    onnx.save(model, str(path))


def _drop_unused(graph) -> None:  # type: ignore[no-untyped-def]
    """Remove the nodes (the Pads' size arithmetic) whose outputs nothing reads any more."""
    outputs = {o.name for o in graph.output}
    while True:
        read = outputs | {name for node in graph.node for name in node.input}
        unused = [n for n in graph.node if not any(o in read for o in n.output)]
        if not unused:
            return
        for node in unused:
            graph.node.remove(node)


def export_onnx(model: DetectorNet, config: ModelConfig, target: Path, sha256: str = "") -> Path:
    """Export ``model`` (eval, float32, CPU) with a dynamic batch axis and ``config.input_size`` square inputs to
    ``target``, atomically, stamped with the checkpoint hash ``sha256`` (detector.int8.CHECKPOINT_KEY)."""
    import onnx  # noqa: F401  (the exporter needs it; fail here with a clear ImportError)

    target.parent.mkdir(parents=True, exist_ok=True)
    model = with_static_padding(copy.deepcopy(model).float().cpu().eval(), config.input_size)
    sample = torch.zeros(2, 3, config.input_size, config.input_size)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            torch.onnx.export(
                model, (sample,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: no onnxscript dependency, exact for this CNN
            )
        finish_graph(Path(tmp), [m.pad for m in model.modules() if isinstance(m, StaticPadConv)], sha256)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def export_checkpoint(directory: Path, target: Path) -> Path:
    """Load the checkpoint at ``directory`` on the CPU and export it to ``target``; raises CheckpointError,
    ImportError (no ``onnx`` package) or OSError."""
    model, config = load_checkpoint(directory, device="cpu")
    return export_onnx(model, config, target, checkpoint_sha256(directory))


def one_line(message: str, limit: int = 500) -> str:
    """``message`` on one line (torch's state-dict errors span many), at most ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m detector.onnx_export CHECKPOINT_DIR TARGET.onnx", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    try:
        export_checkpoint(Path(args[0]), Path(args[1]))
    except CheckpointError as exc:
        print(one_line(str(exc)), file=sys.stderr)
        return CHECKPOINT_EXIT
    except ImportError as exc:
        print(one_line(f"cannot export {args[0]} to ONNX: {exc}"), file=sys.stderr)
        return IMPORT_EXIT
    except (DetectorError, OSError) as exc:
        print(one_line(f"cannot export {args[0]} to ONNX: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
