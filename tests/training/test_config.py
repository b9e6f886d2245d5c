"""One set of training defaults: the CLI's options are TrainConfig's and DistillRecipe's, and need no torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import typer

from cli import train as train_cmd
from tests.conftest import REPO_ROOT
from training.config import TEACHER_REAL_PER_AI, DistillRecipe, TrainConfig

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(DistillRecipe)}


def option_defaults(command: str) -> dict[str, object]:
    group = typer.main.get_command(train_cmd.app)
    return {p.name: p.default for p in group.commands[command].params if p.name in FIELDS}


@pytest.mark.parametrize("command", ["teacher", "distill"])
def test_cli_defaults_are_the_config_defaults(command: str) -> None:
    defaults = option_defaults(command)
    expected = {**dataclasses.asdict(TrainConfig()), **dataclasses.asdict(DistillRecipe())}
    assert {"epochs", "input_size", "lr", "head_views", "target_fpr"} <= defaults.keys()
    if command == "teacher":
        assert defaults.pop("real_per_ai") == TEACHER_REAL_PER_AI
    else:
        assert {"temperature", "alpha", "label_weight", "family_weight"} <= defaults.keys()
    assert defaults == {name: expected[name] for name in defaults}


def test_defaults_are_the_documented_recipe() -> None:
    tc = TrainConfig()
    assert (tc.epochs, tc.input_size, tc.lr) == (4, 192, 1e-3)
    assert TrainConfig.from_dict(tc.to_dict()) == tc
    with pytest.raises(TypeError):
        TrainConfig.from_dict({"epoch": 3})


def test_train_cli_imports_no_torch() -> None:
    code = "import sys, cli.train, training.config; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
