"""`aidetect train teacher --local`, `aidetect eval --local`, `aidetect models list|show|promote --local`
in-process against an SQLite database (the embedded mode), on the tiny dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aidetect.settings import get_settings
from cli import evaluate as evaluate_cmd
from cli import models as models_cmd
from cli import train as train_cmd


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "aidetect.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def test_train_eval_promote_locally(sqlite_env: Path, tiny_manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    root = typer.Typer()
    root.add_typer(train_cmd.app, name="train")
    root.add_typer(models_cmd.app, name="models")
    root.command("eval")(evaluate_cmd.evaluate)
    tiny = ["--arch", "test_efficientnet", "--input-size", "64", "--epochs", "1", "--batch-size", "8",
            "--freeze-blocks", "0", "--num-workers", "0", "--runs-dir", str(tmp_path / "runs"), "--local"]
    out = runner.invoke(root, ["train", "teacher", "sd-finetune", "--manifest", str(tiny_manifest), "--scratch",
                               *tiny])
    assert out.exit_code == 0, out.output
    assert "run 1: model 1" in out.output
    out = runner.invoke(root, ["eval", "1", "--manifest", str(tiny_manifest), "--local"])
    assert out.exit_code == 0, out.output
    assert "auc=" in out.output
    out = runner.invoke(root, ["models", "promote", "model:1", "--local"])
    assert out.exit_code == 0 and "active model: 1" in out.output, out.output
    out = runner.invoke(root, ["models", "list", "--format", "json"])
    rows = json.loads(out.output)
    assert rows[0]["role"] == "teacher" and rows[0]["active"] is True and rows[0]["val_auc"] is not None
    out = runner.invoke(root, ["models", "show", "1"])
    assert out.exit_code == 0 and '"provenance"' in out.output
    bad = runner.invoke(root, ["train", "teacher", "flux", "--manifest", str(tiny_manifest), "--scratch", *tiny])
    assert bad.exit_code == 2 and "family 'flux' has no images" in bad.output
