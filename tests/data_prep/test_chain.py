"""The whole chain through the CLI (``--local``) on a handful of photos with tiny models, then a teacher on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aidetect.settings import get_settings
from cli.data import app
from tests.data_prep.helpers import write_csv
from tests.image_factory import png
from training.dataprep.table import read_table
from training.manifest import family_subset, load_manifest

MJ_PROMPTS = ["a red car on the street --ar 16:9", "a cat on the grass --v 5", "a dog on the beach",
              "snow on the mountain", "a bowl of fruit on the table", "a red photo of a cat", "grass and snow",
              "a car on the beach", "a dog and a cat on a table", "photo of fruit"]


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_caption_generate_match_build_then_train(tiny_blip: Path, tiny_sd: Path, photos: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'aidetect.db'}")
    get_settings.cache_clear()
    collection = tmp_path / "mj"
    for i in range(len(MJ_PROMPTS)):
        (collection / f"{i}.png").parent.mkdir(parents=True, exist_ok=True)
        (collection / f"{i}.png").write_bytes(png(seed=50 + i, width=48, height=48))
    write_csv(collection / "index.csv", [{"prompt": p, "path": f"{i}.png"} for i, p in enumerate(MJ_PROMPTS)])

    _invoke("caption", str(photos), "--model", str(tiny_blip), "--model-name", "tiny/blip", "--max-new-tokens", "6",
            "--num-beams", "1", "--local")
    captions = photos.with_name("manifest.captions.csv")
    _invoke("generate", str(captions), "--out-dir", str(tmp_path / "sd"), "--model", str(tiny_sd), "--model-name",
            "stable-diffusion-v1-5/stable-diffusion-v1-5", "--steps", "2", "--height", "32", "--width", "32", "--local")
    _invoke("match", str(captions), "--index", str(collection / "index.csv"), "--out-dir", str(tmp_path / "mjout"),
            "--min-similarity", "0.01", "--local")
    output = _invoke("build", "--out", str(tmp_path / "train" / "manifest.csv"), "--real", str(captions),
                     "--generated", str(tmp_path / "sd" / "manifest.csv"), "--matched",
                     str(tmp_path / "mjout" / "manifest.csv"), "--local")
    assert "stable_diffusion" in output and "train" in output

    out = tmp_path / "train" / "manifest.csv"
    manifest = load_manifest(out, required_splits=("train", "val"))
    families = {s.family for s in manifest.samples}
    assert {"real", "stable_diffusion"} <= families
    assert read_table(tmp_path / "mjout" / "manifest.csv").rows, "tiny BLIP captions should match some prompt"
    for split in ("train", "val"):
        assert family_subset(manifest.split(split), "stable_diffusion")

    # What `aidetect train teacher` runs, on this manifest as it is (tiny input, one epoch, random init).
    from training.config import TrainConfig
    from training.teacher import train_teacher

    tc = TrainConfig(input_size=64, epochs=1, batch_size=8, pretrained=False, threads=1, num_workers=0,
                     warmup_steps=1)
    result = train_teacher("stable_diffusion", out, tc, tmp_path / "teacher")
    assert result.checkpoint.exists()
    assert result.val  # metrics computed on the val split

    # Every step resumes: a second pass does no work (no model loads are needed for done rows).
    again = _invoke("caption", str(photos), "--model", "/nonexistent/blip", "--model-name", "tiny/blip", "--local")
    assert "captioned=0" in again
