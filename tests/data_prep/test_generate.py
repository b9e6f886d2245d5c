"""Stage 2: Stable Diffusion images from captions with a tiny real pipeline loaded by path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data_prep.helpers import write_csv
from training.dataprep.errors import DataPrepError, MissingExtraError, ModelUnavailableError
from training.dataprep.generate import GenerateConfig, SDGenerator, family_for, generate_images, image_seed
from training.dataprep.table import read_table

CAPTIONS = ["a dog on the grass", "a red car on the street", "a bowl of fruit on a table"]


class RefusingGenerator(SDGenerator):
    def __init__(self) -> None:  # no pipeline at all
        self.scheduler = "none"

    def generate(self, prompts, seeds, config):  # type: ignore[no-untyped-def, override]
        raise AssertionError(f"asked to generate {len(prompts)} images that exist already")


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    rows = [{"path": f"/photos/{i}.jpg", "label": "real", "family": "real", "source": f"src-{i % 2}",
             "split": "train", "content_sha256": f"{i:02d}" * 32, "caption": text} for i, text in enumerate(CAPTIONS)]
    rows.append({"path": "/photos/x.jpg", "label": "real", "family": "real", "source": "src-0", "split": "train",
                 "content_sha256": "ff" * 32, "caption": ""})  # failed to caption: nothing to generate
    return write_csv(tmp_path / "captions.csv", rows)


def _config(captions: Path, model: Path, out: Path, **overrides: object) -> GenerateConfig:
    base = {"captions": str(captions), "out_dir": str(out), "model": str(model), "model_name": "someone/tiny-sd-ft",
            "n_per_caption": 2, "steps": 2, "guidance": 5.0, "height": 32, "width": 32, "batch_size": 4, "seed": 7}
    return GenerateConfig(**{**base, **overrides})  # type: ignore[arg-type]


def test_family_from_model_id() -> None:
    assert family_for("stable-diffusion-v1-5/stable-diffusion-v1-5") == "stable_diffusion"
    assert family_for("runwayml/stable-diffusion-v1-5") == "stable_diffusion"
    assert family_for("CompVis/stable-diffusion-v1-4") == "stable_diffusion"
    assert family_for("stabilityai/stable-diffusion-xl-base-1.0") == "stable_diffusion"
    assert family_for("stabilityai/sdxl-turbo") == "stable_diffusion"
    assert family_for("stabilityai/stable-diffusion-2-1") == "stable_diffusion"
    assert family_for("Lykon/dreamshaper-8") == "sd_finetune"
    assert family_for("prompthero/openjourney") == "sd_finetune"
    assert family_for("someone/stable-diffusion-v1-5-anime") == "sd_finetune"


def test_generates_records_and_resumes(tiny_sd: Path, captions: Path, tmp_path: Path) -> None:
    out = tmp_path / "sd"
    config = _config(captions, tiny_sd, out)
    result = generate_images(config)

    rows = read_table(result.manifest).rows
    assert (result.total, result.generated, result.family) == (6, 6, "sd_finetune")
    assert {r["family"] for r in rows} == {"sd_finetune"} and {r["label"] for r in rows} == {"ai"}
    assert {r["generator"] for r in rows} == {"someone/tiny-sd-ft"} and {r["model_id"] for r in rows} == {str(tiny_sd)}
    first = rows[0]
    assert (first["steps"], first["guidance"], first["width"], first["height"]) == ("2", "5.0", "32", "32")
    assert first["scheduler"] == "DDIMScheduler" and first["prompt"] == CAPTIONS[0]
    assert first["seed"] == str(image_seed(7, "00" * 32, 0)) and first["source"] == "src-0"
    assert len({r["seed"] for r in rows}) == 6
    for row in rows:
        with Image.open(out / row["path"]) as image:
            assert image.format == "JPEG" and image.size == (32, 32)

    again = generate_images(config, generator=RefusingGenerator())
    assert (again.generated, again.total) == (0, 6)

    # A lost file is made again, from the same seed, alone in its batch: the same picture.
    victim = out / rows[3]["path"]
    before = np.asarray(Image.open(victim).convert("RGB"), dtype=np.int16)
    victim.unlink()
    redo = generate_images(_config(captions, tiny_sd, out, batch_size=1))
    assert (redo.generated, redo.total) == (1, 6)
    after = np.asarray(Image.open(victim).convert("RGB"), dtype=np.int16)
    assert np.abs(before - after).mean() < 2.0


def test_base_model_family_and_local_path_needs_a_name(tiny_sd: Path, captions: Path, tmp_path: Path) -> None:
    config = _config(captions, tiny_sd, tmp_path / "sd", model_name="stable-diffusion-v1-5/stable-diffusion-v1-5",
                     n_per_caption=1, limit=1, image_format="png")
    result = generate_images(config)
    row = read_table(result.manifest).rows[0]
    assert (result.total, row["family"], row["orig_format"]) == (1, "stable_diffusion", "PNG")
    assert row["path"].endswith(".png")

    with pytest.raises(DataPrepError, match="--model-name"):
        generate_images(_config(captions, tiny_sd, tmp_path / "other", model_name=None))


def test_hub_model_offline_and_missing_diffusers(captions: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = GenerateConfig(captions=str(captions), out_dir=str(tmp_path / "sd"))
    with pytest.raises(ModelUnavailableError, match="stable-diffusion-v1-5/stable-diffusion-v1-5.*local path"):
        generate_images(config)

    monkeypatch.setitem(sys.modules, "diffusers", None)  # as on a detect-only worker
    with pytest.raises(MissingExtraError, match=r"aidetect\[generate\]"):
        generate_images(config)
