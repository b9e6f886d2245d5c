"""Stage 2: Stable Diffusion images from the captions of real photos (diffusers, the ``generate`` extra).

Each caption gets ``n_per_caption`` images; image ``k`` of the photo with bytes ``sha`` is
``images/<generator>/<sha[:16]>_<k>.jpg`` under ``out_dir``, generated with its own seed derived from
(seed, sha, k), so a resumed or re-batched run draws the same noise. Steps, guidance, size, seed, scheduler
and model id are recorded per image in ``out_dir/manifest.csv`` (family ``stable_diffusion`` for base SD
model ids, ``sd_finetune`` for any other). Images the pipeline's safety checker blanks are not kept (a black
square is not an SD image); they are logged in ``skipped.jsonl`` and not generated again.

Images are saved as JPEG quality 95 by default, the encoding of the real photos in the realfake corpus, so that
the file format cannot tell real from generated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from training.dataprep.errors import DataPrepError, InputError
from training.dataprep.hub import half_on_cuda, load_pretrained, pick_device, require
from training.dataprep.table import (
    BASE_COLUMNS,
    LINK_COLUMNS,
    Row,
    append_jsonl,
    read_jsonl,
    read_table,
    read_table_or_empty,
    slug,
    write_bytes_atomic,
    write_table,
)
from training.manifest import normalise_family
from training.progress import Report, silent

log = logging.getLogger(__name__)

DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD_FAMILY, FINETUNE_FAMILY = "stable_diffusion", "sd_finetune"
# Base Stable Diffusion releases (Stability AI / CompVis / RunwayML and the official v1.5 mirror).
_BASE_SD = re.compile(
    r"^(compvis/stable-diffusion-v1-[1-4]|runwayml/stable-diffusion-v1-5|stable-diffusion-v1-5/stable-diffusion-v1-5"
    r"|stabilityai/(stable-diffusion-[0-9a-z.\-]+|sdxl-turbo|sd-turbo))$"
)
GENERATED_COLUMNS = (
    *BASE_COLUMNS, *LINK_COLUMNS, "prompt", "negative_prompt", "model_id", "scheduler", "steps", "guidance",
    "width", "height", "seed", "image_index",
)
FORMATS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}


@dataclass(frozen=True)
class GenerateConfig:
    """One generation run: which captions, which pipeline, how, and where the images go."""

    captions: str  # a captions manifest (stage 1)
    out_dir: str
    model: str = DEFAULT_SD_MODEL  # hub id or local diffusers directory
    model_name: str | None = None  # recorded as generator (default: model); the hub id of a local copy
    family: str | None = None  # None: stable_diffusion for base SD ids, sd_finetune for others
    n_per_caption: int = 1
    seed: int = 0
    steps: int = 30
    guidance: float = 7.5
    height: int | None = None  # None: the pipeline's default (512 for SD 1.x, 1024 for SDXL)
    width: int | None = None
    negative_prompt: str = ""
    batch_size: int = 4
    image_format: str = "jpeg"  # jpeg | png
    quality: int = 95
    device: str = "auto"
    limit: int | None = None  # use at most this many captions (a trial run)

    @property
    def generator_name(self) -> str:
        return self.model_name or self.model

    def manifest_path(self) -> Path:
        return Path(self.out_dir).resolve() / "manifest.csv"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateConfig:
        return cls(**data)


@dataclass(frozen=True)
class GenerateResult:
    manifest: Path
    total: int  # images in the output manifest
    generated: int  # in this run
    skipped_nsfw: int  # blanked by the safety checker (this run and earlier ones)
    family: str
    generator: str

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "manifest": str(self.manifest)}


def family_for(model_name: str) -> str:
    """``stable_diffusion`` for a base Stable Diffusion hub id, ``sd_finetune`` for anything else."""
    return SD_FAMILY if _BASE_SD.match(model_name.strip().lower()) else FINETUNE_FAMILY


def resolve_family(config: GenerateConfig) -> str:
    """The family to record. Raises DataPrepError when a local path gives no name to infer it from."""
    if config.family:
        family = normalise_family(config.family)
        if family not in (SD_FAMILY, FINETUNE_FAMILY):
            raise DataPrepError(f"family {family!r}: generate makes {SD_FAMILY} or {FINETUNE_FAMILY} images")
        return family
    if config.model_name is None and Path(config.model).expanduser().is_dir():
        raise DataPrepError(
            f"{config.model} is a local directory: say what it is with --model-name HUB_ID (e.g. "
            f"{DEFAULT_SD_MODEL}) or --family {SD_FAMILY}|{FINETUNE_FAMILY}"
        )
    return family_for(config.generator_name)


def image_seed(seed: int, parent_sha256: str, index: int) -> int:
    """The seed of one image: stable across runs and batchings, distinct per (photo, index)."""
    digest = hashlib.sha256(f"{seed}:{parent_sha256}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


@dataclass(frozen=True)
class Job:
    """One image to make."""

    caption_row: Row
    index: int
    seed: int
    relative: str  # path below out_dir


class SDGenerator:
    """A diffusers text-to-image pipeline on one device. Build once per process, pass it in."""

    def __init__(self, pipeline: Any, device: torch.device) -> None:
        self.pipeline, self.device = pipeline, device
        self.scheduler = type(pipeline.scheduler).__name__

    @classmethod
    def load(cls, config: GenerateConfig) -> SDGenerator:
        """Load ``config.model``. Raises MissingExtraError, ModelUnavailableError, DataPrepError."""
        diffusers = require("diffusers", "generate")
        device = pick_device(config.device)
        with warnings.catch_warnings():  # diffusers >= 0.36 prefers dtype=, older ones know only torch_dtype=
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipeline = load_pretrained(diffusers.AutoPipelineForText2Image.from_pretrained, config.model,
                                       "Stable Diffusion pipeline", torch_dtype=half_on_cuda(device))
        name = type(pipeline).__name__
        if not name.startswith("StableDiffusion") and not config.family:
            raise DataPrepError(f"{config.model} loads as {name}, not a Stable Diffusion pipeline; "
                                "pass --family if it really belongs to an SD family")
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline.to(device), device)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int],
                 config: GenerateConfig) -> list[Image.Image | None]:
        """One image per prompt (None where the safety checker blanked it)."""
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]  # CPU noise: same on any device
        output = self.pipeline(
            prompt=list(prompts), negative_prompt=[config.negative_prompt] * len(prompts) if config.negative_prompt
            else None, num_inference_steps=config.steps, guidance_scale=config.guidance, height=config.height,
            width=config.width, generator=generators, output_type="pil",
        )
        flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(prompts)
        return [None if bad else image for image, bad in zip(output.images, flagged, strict=True)]


def generate_images(config: GenerateConfig, generator: SDGenerator | None = None,
                    report: Report = silent) -> GenerateResult:
    """Generate the missing images of ``config`` and rewrite ``out_dir/manifest.csv`` after every batch.

    ``generator`` is loaded from ``config`` only when an image is missing. Raises InputError for captions
    without any usable row, DataPrepError/ModelUnavailableError/MissingExtraError for the pipeline.
    """
    if config.image_format not in FORMATS:
        raise DataPrepError(f"image format {config.image_format!r}: choose one of {sorted(FORMATS)}")
    family = resolve_family(config)
    out = Path(config.out_dir).resolve()
    manifest = config.manifest_path()
    rows = read_table_or_empty(manifest).rows
    skipped_log = out / "skipped.jsonl"
    skipped = {r["path"] for r in read_jsonl(skipped_log)}
    done = {r["path"] for r in rows if (out / r["path"]).is_file()}
    rows = [r for r in rows if r["path"] in done]  # rows whose file vanished are made again
    jobs = [j for j in plan_jobs(config) if j.relative not in done and j.relative not in skipped]
    total = len(done) + len(jobs)
    report("generate", done=len(done), total=total)
    generated = 0
    if jobs:
        generator = generator or SDGenerator.load(config)
        for start in range(0, len(jobs), config.batch_size):
            batch = jobs[start : start + config.batch_size]
            images = generator.generate([j.caption_row["caption"] for j in batch], [j.seed for j in batch], config)
            for job, image in zip(batch, images, strict=True):
                if image is None:
                    append_jsonl(skipped_log, {"path": job.relative, "reason": "nsfw_filtered", "seed": job.seed})
                    skipped.add(job.relative)
                    continue
                _save(image, out / job.relative, config)
                rows.append(_row(job, image, config, family, generator.scheduler))
                generated += 1
            write_table(manifest, rows, GENERATED_COLUMNS)
            report("generate", done=len(done) + start + len(batch), total=total)
    write_table(manifest, rows, GENERATED_COLUMNS)
    report("done", done=len(rows), total=total)
    return GenerateResult(manifest, len(rows), generated, len(skipped), family, config.generator_name)


def plan_jobs(config: GenerateConfig) -> list[Job]:
    """Every image the run should end with: one Job per (captioned photo, index)."""
    captions = read_table(config.captions)
    usable = [r for r in captions.rows if r.get("caption", "").strip() and r.get("content_sha256")]
    if not usable:
        raise InputError(f"{captions.path}: no captioned rows (run `aidetect data caption` first)")
    usable = usable[: config.limit] if config.limit is not None else usable
    extension = FORMATS[config.image_format][1]
    folder = f"images/{slug(config.generator_name)}"
    usable = list({r["content_sha256"]: r for r in usable}.values())  # the same photo twice: one set of images
    return [
        Job(row, k, image_seed(config.seed, row["content_sha256"], k),
            f"{folder}/{row['content_sha256'][:16]}_{k}{extension}")
        for row in usable for k in range(config.n_per_caption)
    ]


def _save(image: Image.Image, path: Path, config: GenerateConfig) -> None:
    fmt = FORMATS[config.image_format][0]
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=fmt, **({"quality": config.quality} if fmt == "JPEG" else {}))
    write_bytes_atomic(path, buffer.getvalue())


def _row(job: Job, image: Image.Image, config: GenerateConfig, family: str, scheduler: str) -> Row:
    parent = job.caption_row
    return {
        "path": job.relative, "label": "ai", "family": family, "generator": config.generator_name,
        "origin_repo": "", "origin_commit": "", "origin_path": "", "orig_format": FORMATS[config.image_format][0],
        "orig_width": str(image.width), "orig_height": str(image.height),
        "license": "generated (the model's licence applies)", "split": parent.get("split", ""),
        "note": "", "source": parent.get("source", ""), "parent_sha256": parent["content_sha256"],
        "caption": parent["caption"], "prompt": parent["caption"], "negative_prompt": config.negative_prompt,
        "model_id": config.model, "scheduler": scheduler, "steps": str(config.steps),
        "guidance": str(config.guidance), "width": str(image.width), "height": str(image.height),
        "seed": str(job.seed), "image_index": str(job.index),
    }
