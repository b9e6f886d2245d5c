"""Repository functions for ``labels``: human corrections of verdicts. They take a Session and never commit.

Labels are append-only: a second correction of the same image is a new row, and the latest row (highest id)
is what the image is. The history stays, with who said what, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, Label, Model, TrueLabel, Verdict, VerdictLabel

# The training corpus's families, in the identifier form of detector.FAMILIES and training.manifest.
KNOWN_FAMILIES = ("midjourney", "stable_diffusion", "sd_finetune", "dalle", "flux", "gan", "other_ai")
UNKNOWN_FAMILY = "unknown"


class LabelError(ValueError):
    """A correction that cannot be stored (unknown image, family on a real image, unknown family, ...)."""


@dataclass(frozen=True)
class CorrectedImage:
    """An image with its latest human label, and what the worker learnt about it."""

    image_id: int
    url: str
    domain: str
    label: TrueLabel
    family: str | None
    note: str | None
    labelled_by: str
    labelled_at: datetime
    label_id: int
    content_sha256: str | None
    provenance: str | None
    provenance_evidence: dict[str, Any] | None


@dataclass(frozen=True)
class CorrectedVerdict:
    """A model's verdict on a corrected image beside the human label: the rows evaluation compares."""

    image_id: int
    true_label: TrueLabel
    family: str | None
    p_ai: float
    predicted: VerdictLabel


def normalise_family(label: TrueLabel, family: str | None) -> str | None:
    """``Stable-Diffusion`` -> ``stable_diffusion``; None for real images and for "unknown".

    Raises LabelError for a family on a real image or a family outside :data:`KNOWN_FAMILIES`.
    """
    name = (family or "").strip().lower().replace("-", "_").replace(" ", "_")
    if label is TrueLabel.REAL:
        if name not in ("", "real"):
            raise LabelError(f"a real image has no generator family (got {family!r})")
        return None
    if name in ("", UNKNOWN_FAMILY):
        return None
    if name not in KNOWN_FAMILIES:
        raise LabelError(f"unknown family {family!r} (known: {', '.join(KNOWN_FAMILIES)}, or {UNKNOWN_FAMILY})")
    return name


def add_label(
    session: Session,
    image_id: int,
    label: TrueLabel | str,
    family: str | None,
    note: str | None,
    labelled_by: str,
) -> Label:
    """Record that ``image_id`` really is ``label`` (flushed, so the row has its id). Raises LabelError."""
    try:
        true_label = TrueLabel(label)
    except ValueError:
        raise LabelError(f"label must be one of {[t.value for t in TrueLabel]}, got {label!r}") from None
    who = (labelled_by or "").strip()
    if not who:
        raise LabelError("who labels must be known (labelled_by is empty)")
    if session.get(Image, image_id) is None:
        raise LabelError(f"no image with id {image_id}")
    row = Label(
        image_id=image_id,
        label=true_label,
        family=normalise_family(true_label, family),
        note=(note or "").strip() or None,
        labelled_by=who[:128],
    )
    session.add(row)
    session.flush()
    return row


def find_image(session: Session, url_or_id: int | str) -> Image | None:
    """The image with this id (an int, or a string of digits) or URL (normalised as the producer does).

    Raises ``aidetect.urls.InvalidURL`` for a string that is neither an id nor a valid http(s) URL.
    """
    if isinstance(url_or_id, int) or url_or_id.strip().isdigit():
        return session.get(Image, int(url_or_id))
    # aidetect.urls is a pure leaf module (w3lib only): the one definition of a URL's canonical form.
    from aidetect.urls import normalise_url

    key = normalise_url(url_or_id).url_hash
    return session.scalars(select(Image).where(Image.url_hash == key)).one_or_none()


def labels_of(session: Session, image_id: int) -> list[Label]:
    """Every label of one image, oldest first."""
    return list(session.scalars(select(Label).where(Label.image_id == image_id).order_by(Label.id)))


def _latest_label_ids():  # type: ignore[no-untyped-def]
    return select(func.max(Label.id)).group_by(Label.image_id)


def corrected_images(session: Session) -> list[CorrectedImage]:
    """Every labelled image with its latest label, by image id."""
    stmt = (
        select(Label, Image)
        .join(Image, Image.id == Label.image_id)
        .where(Label.id.in_(_latest_label_ids()))
        .order_by(Label.image_id)
    )
    return [
        CorrectedImage(
            image_id=image.id,
            url=image.url,
            domain=image.domain,
            label=TrueLabel(label.label),
            family=label.family,
            note=label.note,
            labelled_by=label.labelled_by,
            labelled_at=label.created_at,
            label_id=label.id,
            content_sha256=image.content_sha256,
            provenance=image.provenance,
            provenance_evidence=image.provenance_evidence,
        )
        for label, image in session.execute(stmt).all()
    ]


def corrected_labels(session: Session) -> dict[int, TrueLabel]:
    """``{image_id: latest human label}`` for every corrected image."""
    stmt = select(Label.image_id, Label.label).where(Label.id.in_(_latest_label_ids()))
    return {image_id: TrueLabel(label) for image_id, label in session.execute(stmt).all()}


def corrected_image_ids(session: Session) -> set[int]:
    """Ids of the images a human has labelled (evaluation reports accuracy on them separately)."""
    return set(session.scalars(select(Label.image_id).distinct()))


def corrected_verdicts(session: Session, model_id: int) -> list[CorrectedVerdict]:
    """The verdicts of ``model_id`` on corrected images, beside their latest labels (unscored ones omitted)."""
    stmt = (
        select(Label.image_id, Label.label, Label.family, Verdict.p_ai, Verdict.label)
        .join(Verdict, Verdict.image_id == Label.image_id)
        .where(Label.id.in_(_latest_label_ids()), Verdict.model_id == model_id)
        .order_by(Label.image_id)
    )
    return [
        CorrectedVerdict(image_id, TrueLabel(truth), family, p_ai, VerdictLabel(predicted))
        for image_id, truth, family, p_ai, predicted in session.execute(stmt).all()
    ]


def active_verdict(session: Session, image_id: int) -> Verdict | None:
    """The verdict of the active model on ``image_id``, if it has one."""
    stmt = select(Verdict).join(Model, Model.id == Verdict.model_id).where(
        Verdict.image_id == image_id, Model.active
    )
    return session.scalars(stmt).one_or_none()
