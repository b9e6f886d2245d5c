"""Tiny real models and small photo sets for the data-preparation tests (no hub, no network).

The BLIP captioner and the Stable Diffusion pipeline are built from configs with random weights, saved with
``save_pretrained`` and loaded back by path through the same code that loads hub models; their tokenizers are
built from vocabulary files written here.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aidetect.settings import get_settings
from tests.image_factory import encode, noise_image

BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "dog", "cat", "on", "the",
              "grass", "red", "car", "beach", "street", "table", "bowl", "fruit", "mountain", "snow"]


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never probe the hub from tests
    monkeypatch.setenv("AIDETECT_TORCH_THREADS", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BLIP captioning model + processor directory (random weights, 22-word vocabulary, 32 px input)."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    directory = tmp_path_factory.mktemp("tiny-blip")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(BLIP_WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab), model_max_length=32)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4}
    config = BlipConfig(
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        text_config={**layers, "vocab_size": len(BLIP_WORDS), "max_position_embeddings": 64,
                     "bos_token_id": 2, "pad_token_id": 0, "sep_token_id": 3, "eos_token_id": 3},
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A StableDiffusionPipeline directory: tiny UNet, VAE (x2 downsampling) and CLIP text encoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory = tmp_path_factory.mktemp("tiny-sd")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter], vocab[f"{letter}</w>"] = len(vocab), len(vocab) + 1
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(32, 64), latent_channels=4,
        layers_per_block=1, norm_num_groups=32, sample_size=32)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(directory / "pipeline")
    return directory / "pipeline"


PHOTO_SOURCES = {"camera-a": 3, "camera-b": 2, "camera-c": 2}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A manifest (realfake columns, no split) of 7 real 'photos' from 3 sources, plus one AI row to skip."""
    root = tmp_path / "photos"
    rows = []
    seed = 0
    for source, count in PHOTO_SOURCES.items():
        for i in range(count):
            seed += 1
            relative = f"images/real/{source}/{i:04d}.jpg"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(encode(noise_image(48 + seed, 40, seed=seed), "JPEG", quality=90))
            rows.append({"path": relative, "label": "real", "family": "real", "generator": "photo",
                         "origin_repo": f"example/{source}", "split": "train" if source != "camera-c" else "val"})
    ai = "images/ai/sd/0001.jpg"
    (root / ai).parent.mkdir(parents=True, exist_ok=True)
    (root / ai).write_bytes(encode(noise_image(40, 40, seed=99), "JPEG", quality=90))
    rows.append({"path": ai, "label": "ai", "family": "stable-diffusion", "generator": "sd-1.5",
                 "origin_repo": "example/sd", "split": "train"})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"

