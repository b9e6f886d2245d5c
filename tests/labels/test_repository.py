"""db.labels on SQLite and PostgreSQL: corrections are appended, the latest wins, nothing is committed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from aidetect.urls import InvalidURL
from db import labels
from db.models import Label, TrueLabel, VerdictLabel
from db.session import transaction
from tests.labels.factory import add_image, add_model, add_verdict


def test_add_label_records_who_what_and_why(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        image = add_image(session, "https://img.example/cat.png")
        row = labels.add_label(session, image.id, "ai", "Stable-Diffusion", "  six fingers  ", "alice")
        assert row.id is not None  # flushed
    with sessions() as session:
        stored = session.get(Label, row.id)
        assert (stored.label, stored.family, stored.note, stored.labelled_by) == (
            TrueLabel.AI, "stable_diffusion", "six fingers", "alice")
        assert stored.created_at is not None


@pytest.mark.parametrize("label, family, stored", [
    ("ai", None, None), ("ai", "unknown", None), ("ai", "midjourney", "midjourney"),
    ("ai", "SD_Finetune", "sd_finetune"), ("ai", "other-ai", "other_ai"),
    ("real", None, None), ("real", "real", None), (TrueLabel.REAL, "", None),
])
def test_family_normalisation(sessions: sessionmaker[Session], label, family, stored) -> None:
    with transaction(sessions) as session:
        image = add_image(session, "https://img.example/a.png")
        assert labels.add_label(session, image.id, label, family, None, "bob").family == stored


@pytest.mark.parametrize("label, family, by, message", [
    ("fake", None, "bob", "label must be one of"),
    ("real", "midjourney", "bob", "no generator family"),
    ("ai", "imaginary-gan", "bob", "unknown family"),
    ("ai", None, "  ", "who labels"),
])
def test_invalid_labels_are_refused(sessions: sessionmaker[Session], label, family, by, message) -> None:
    with transaction(sessions) as session:
        image = add_image(session, "https://img.example/a.png")
        with pytest.raises(labels.LabelError, match=message):
            labels.add_label(session, image.id, label, family, None, by)


def test_label_of_a_missing_image_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(labels.LabelError, match="no image with id 4242"):
        labels.add_label(session, 4242, "ai", None, None, "bob")


def test_functions_never_commit(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        image = add_image(session, "https://img.example/a.png")
        labels.add_label(session, image.id, "ai", None, None, "bob")
        session.rollback()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 0


def test_find_image_by_id_or_url_in_any_spelling(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        image = add_image(session, "https://img.example/path/cat.png?b=2&a=1")
        image_id = image.id
    with sessions() as session:
        for key in (image_id, str(image_id), f" {image_id} ", "HTTPS://IMG.EXAMPLE:443/path/./cat.png?a=1&b=2#frag"):
            assert labels.find_image(session, key).id == image_id
        assert labels.find_image(session, "https://img.example/other.png") is None
        assert labels.find_image(session, 999) is None
        with pytest.raises(InvalidURL):
            labels.find_image(session, "ftp://img.example/cat.png")


def test_latest_label_wins_and_history_stays(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        first, second, unlabelled = (add_image(session, f"https://img.example/{n}.png") for n in range(3))
        labels.add_label(session, second.id, "real", None, "looks real", "alice")
        labels.add_label(session, first.id, "ai", "midjourney", None, "alice")
        labels.add_label(session, second.id, "ai", "flux", "found the prompt", "bob")
        ids = (first.id, second.id, unlabelled.id)
    with sessions() as session:
        corrected = labels.corrected_images(session)
        assert [(c.image_id, c.label, c.family, c.labelled_by) for c in corrected] == [
            (ids[0], TrueLabel.AI, "midjourney", "alice"), (ids[1], TrueLabel.AI, "flux", "bob")]
        assert corrected[1].note == "found the prompt" and corrected[1].url == "https://img.example/1.png"
        assert corrected[1].domain == "img.example"
        assert [row.label for row in labels.labels_of(session, ids[1])] == [TrueLabel.REAL, TrueLabel.AI]
        assert labels.corrected_image_ids(session) == {ids[0], ids[1]}
        assert labels.corrected_labels(session) == {ids[0]: TrueLabel.AI, ids[1]: TrueLabel.AI}


def test_corrected_verdicts_pair_the_model_with_the_truth(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        model, old = add_model(session), add_model(session, active=False, name="old")
        wrong, right, unscored = (add_image(session, f"https://img.example/{n}.png") for n in range(3))
        add_verdict(session, wrong, model, 0.1)
        add_verdict(session, right, model, 0.9)
        add_verdict(session, wrong, old, 0.95)
        for image in (wrong, right, unscored):
            labels.add_label(session, image.id, "ai", None, None, "alice")
        model_id, wrong_id, right_id = model.id, wrong.id, right.id
    with sessions() as session:
        rows = labels.corrected_verdicts(session, model_id)
        assert [(r.image_id, r.true_label, r.predicted, r.p_ai) for r in rows] == [
            (wrong_id, TrueLabel.AI, VerdictLabel.REAL, 0.1), (right_id, TrueLabel.AI, VerdictLabel.AI, 0.9)]
        assert labels.active_verdict(session, wrong_id).p_ai == 0.1
