"""The schema: typed SQLAlchemy 2.0 models shared by PostgreSQL and SQLite.

Every URL ends as an ``images`` row with a status and, when it failed, an error code;
verdicts are keyed on (image, model) so a redelivered message rewrites the same row.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(cls: type[enum.Enum], name: str, length: int = 16) -> Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint, same on PostgreSQL and SQLite."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class WorkStatus(enum.StrEnum):
    """Life of a unit of work (an image to score, a page to crawl)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class VerdictLabel(enum.StrEnum):
    AI = "ai"
    REAL = "real"
    UNCERTAIN = "uncertain"


class VerdictReason(enum.StrEnum):
    """Why a verdict has its label: the pixels, or provenance metadata declaring the image AI-made."""

    PIXELS = "pixels"  # the model's thresholds on p_ai
    C2PA = "c2pa"  # a C2PA manifest with a generative-AI digitalSourceType
    IPTC = "iptc"  # XMP Iptc4xmpExt:DigitalSourceType trainedAlgorithmicMedia (or composite with it)
    GENERATOR_METADATA = "generator_metadata"  # generation parameters or a generator's name in the metadata


class PageKind(enum.StrEnum):
    """What a ``pages`` row holds; each kind has its own handler in the crawler (``producer.crawl``)."""

    HTML = "html"
    SITEMAP = "sitemap"
    ROBOTS = "robots"
    RESOURCE = "resource"  # queued as a page, served as something else (an image, a PDF): never parsed
    ALIAS = "alias"  # another URL of a page already crawled (its rel=canonical): never fetched
    STYLESHEET = "stylesheet"  # fetched for its images only, never a row (a fetch policy, not a handler)


class TrueLabel(enum.StrEnum):
    AI = "ai"
    REAL = "real"


intpk = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
created = Annotated[datetime, mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)]
url_text = Annotated[str, mapped_column(Text, nullable=False)]
sha256_hex = Annotated[str, mapped_column(String(64), nullable=False)]
json_data = Annotated[dict[str, Any], mapped_column(JSON, nullable=False, default=dict)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """A submission users can follow: one enqueue file, one crawl, one `aidetect score` call."""

    __tablename__ = "jobs"

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # enqueue | crawl | score
    source: Mapped[str] = mapped_column(Text, nullable=False)
    submitted: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    accepted: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    duplicates: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rejected: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    params: Mapped[json_data]
    created_at: Mapped[created]
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Image(Base):
    """One normalised image URL and what became of it."""

    __tablename__ = "images"

    id: Mapped[intpk]
    url: Mapped[url_text]
    url_hash: Mapped[sha256_hex] = mapped_column(unique=True)
    domain: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    status: Mapped[WorkStatus] = mapped_column(
        _enum(WorkStatus, "work_status"), default=WorkStatus.QUEUED, nullable=False
    )
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    provenance: Mapped[str | None] = mapped_column(String(32))
    provenance_evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    queued_at: Mapped[created]
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    __table_args__ = (Index("ix_images_status_queued_at", "status", "queued_at"),)


class JobImage(Base):
    """Which jobs asked for which image (an image may be asked for by several jobs)."""

    __tablename__ = "job_images"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Model(Base):
    """A registered detector checkpoint. At most one row is active."""

    __tablename__ = "models"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    arch: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(String(16), default="student", nullable=False)  # student | teacher
    checkpoint_path: Mapped[str] = mapped_column(Text, nullable=False)
    checkpoint_sha256: Mapped[sha256_hex] = mapped_column(unique=True)
    threshold_ai: Mapped[float] = mapped_column(Float, nullable=False)
    threshold_real: Mapped[float] = mapped_column(Float, nullable=False)
    metrics: Mapped[json_data]
    config: Mapped[json_data]
    active: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[created]

    __table_args__ = (
        Index(
            "uq_models_one_active",
            "active",
            unique=True,
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
    )


class Verdict(Base):
    """The verdict of one model on one image: ``p_ai`` is always the pixel score; ``label`` is the pixels' unless
    provenance metadata declares the image AI-made (``reason`` says which)."""

    __tablename__ = "verdicts"

    id: Mapped[intpk]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=False)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True
    )
    p_ai: Mapped[float] = mapped_column(Float, nullable=False)
    label: Mapped[VerdictLabel] = mapped_column(_enum(VerdictLabel, "verdict_label"), nullable=False)
    reason: Mapped[VerdictReason] = mapped_column(
        _enum(VerdictReason, "verdict_reason", length=32), nullable=False, default=VerdictReason.PIXELS,
        server_default=VerdictReason.PIXELS.value,
    )
    p_midjourney: Mapped[float | None] = mapped_column(Float)
    p_stable_diffusion: Mapped[float | None] = mapped_column(Float)
    p_sd_finetune: Mapped[float | None] = mapped_column(Float)
    top_family: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[created]
    updated_at: Mapped[created]

    __table_args__ = (
        UniqueConstraint("image_id", "model_id", name="uq_verdicts_image_model"),
        Index("ix_verdicts_label_p_ai", "label", "p_ai"),
    )


class Page(Base):
    """One crawled page (the crawl frontier lives here, shared by all crawl workers)."""

    __tablename__ = "pages"

    id: Mapped[intpk]
    url: Mapped[url_text]
    url_hash: Mapped[sha256_hex]
    domain: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    depth: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), default="html", nullable=False)  # a PageKind value
    status: Mapped[WorkStatus] = mapped_column(
        _enum(WorkStatus, "page_status"), default=WorkStatus.QUEUED, nullable=False
    )
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    http_status: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(255))
    images_found: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    queued_at: Mapped[created]
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("job_id", "url_hash", name="uq_pages_job_url"),
        Index("ix_pages_job_status", "job_id", "status"),
    )


class ImageSource(Base):
    """Where a crawled image was found, with its alt text."""

    __tablename__ = "image_sources"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    page_id: Mapped[int] = mapped_column(
        ForeignKey("pages.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    alt_text: Mapped[str | None] = mapped_column(Text)
    # how the page shows it: img | srcset | css | icon | meta | link | sitemap (producer.crawl.found.FoundAs)
    found_as: Mapped[str | None] = mapped_column(String(16))


class Label(Base):
    """A human correction: what an image really is, who said so, and why."""

    __tablename__ = "labels"

    id: Mapped[intpk]
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True
    )
    label: Mapped[TrueLabel] = mapped_column(_enum(TrueLabel, "true_label"), nullable=False)
    family: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    labelled_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[created]


class TrainingRun(Base):
    """One training-queue task: data preparation, teacher, distillation, evaluation."""

    __tablename__ = "training_runs"

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[WorkStatus] = mapped_column(
        _enum(WorkStatus, "run_status"), default=WorkStatus.QUEUED, nullable=False
    )
    task_id: Mapped[str | None] = mapped_column(String(64), index=True)
    params: Mapped[json_data]
    progress: Mapped[json_data]
    metrics: Mapped[json_data]
    artifacts: Mapped[json_data]
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created]
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Caption(Base):
    """One caption: what ``model`` (with text ``prompt``, often empty) said about the image with these bytes."""

    __tablename__ = "captions"

    id: Mapped[intpk]
    content_sha256: Mapped[sha256_hex]
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    prompt: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    caption: Mapped[str] = mapped_column(Text, nullable=False)
    path: Mapped[str | None] = mapped_column(Text)  # where the image was when it was captioned
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("content_sha256", "model", "prompt", name="uq_captions_content_model_prompt"),
        Index("ix_captions_model", "model"),
    )
