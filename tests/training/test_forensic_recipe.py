"""The forensic transforms against hand-computed values, the uncertain band, and the frozen recipe's
teachers, soft targets and distilled student on synthetic features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.band import band_stats, choose_band
from training.forensic import FORENSIC_DIM, forensic_features, highpass, npr_residual, radial_profile
from training.frozen import (
    Item,
    fit_student,
    group_folds,
    head_scores,
    load_items,
    nested_soft_targets,
    out_of_fold_teachers,
    soft_targets,
)
from training.manifest import Sample


def test_npr_residual_is_pixel_minus_its_cell_anchor() -> None:
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [99, 99, 99, 99]], np.float32)
    expected = np.array([[0, 1, 0, 1], [4, 5, 4, 5], [0, 1, 0, 1], [4, 5, 4, 5]], np.float32)
    assert np.array_equal(npr_residual(x), expected)  # the odd last row is cut


def test_nearest_upsampled_image_has_zero_npr_residual() -> None:
    small = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    upsampled = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    assert np.abs(npr_residual(upsampled)).max() == 0.0


def test_highpass_and_radial_profile_by_hand() -> None:
    gray = np.zeros((3, 3), np.float32)
    gray[1, 1] = 9.0
    assert highpass(gray)[1, 1] == 8.0  # 9 minus the 3x3 mean of 1
    assert highpass(np.full((4, 4), 5.0, np.float32)).max() == 0.0  # flat: no residual
    power = np.zeros((4, 4))
    power[2, 2] = 4.0  # DC only: all in the first ring
    profile = radial_profile(power, 2)
    assert profile[0] > 0 and profile[1] == 0


def test_forensic_features_see_an_upsampling_grid() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (224, 224, 3)).astype(np.uint8)
    grid = np.repeat(np.repeat(rng.integers(0, 256, (112, 112, 3)), 2, axis=0), 2, axis=1).astype(np.uint8)
    f_noise, f_grid = forensic_features(noise), forensic_features(grid)
    assert f_noise.shape == (FORENSIC_DIM,) and np.isfinite(f_noise).all()
    assert f_grid[:18].max() < f_noise[:18].min()  # residual statistics: near zero for the upsampled one


def test_band_keeps_confident_verdicts_right_and_caps_uncertainty() -> None:
    scores = np.array([0.05, 0.1, 0.2, 0.45, 0.55, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    assert band_stats(scores, labels, 0.5, 0.5) == (0.0, 0.75)
    band = choose_band(scores, labels, max_uncertain=0.25, min_accuracy=0.95)
    uncertain, accuracy = band_stats(scores, labels, band.threshold_real, band.threshold_ai)
    assert band.meets_target and uncertain <= 0.25 and accuracy == 1.0


def _items(n: int, sources: int) -> list[Item]:
    families = ["real", "flux", "midjourney"]
    out = []
    for i in range(n):
        family = families[i % 3]
        sample = Sample(Path(f"{i}.png"), int(family != "real"), family, family, f"repo{i % sources}", "train", i + 2)
        out.append(Item(sample, f"{i:064d}", "test"))
    return out


def test_teachers_are_out_of_fold_and_the_distilled_student_learns() -> None:
    rng = np.random.default_rng(0)
    items = _items(240, 12)
    labels = np.array([i.sample.label for i in items])
    x = rng.normal(size=(240, 2, 40)).astype(np.float32)
    x[:, :, :4] += 2.0 * labels[:, None, None]  # the signal a linear student can read
    folds = group_folds(items, 4)
    for source in {i.sample.source for i in items}:  # whole sources per fold
        assert len({f for f, i in zip(folds, items, strict=True) if i.sample.source == source}) == 1
    teachers = out_of_fold_teachers(x, items, folds, ["flux", "midjourney"], lambda *a, **k: None)
    assert set(teachers) == {"general", "flux", "midjourney"}
    assert all(np.isfinite(t).all() for t in teachers.values())  # every view scored by a teacher that did not fit it
    targets = soft_targets(items, teachers)
    assert np.isfinite(targets).all() and ((targets >= 0) & (targets <= 1)).all()
    assert targets[labels == 1].mean() > targets[labels == 0].mean() + 0.2  # teachers separate unseen sources
    head = fit_student(x, items, targets, alpha=0.5, l2=1e-3, families=("flux", "midjourney"))
    assert isinstance(head, torch.nn.Linear) and head.out_features == 3
    scores = head_scores(head, x)
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.3


def test_nested_targets_never_see_the_student_fold() -> None:
    rng = np.random.default_rng(1)
    items = [Item(replace(i.sample, source=f"repo{(n // 3) % 12}"), i.key, i.dataset)  # every family in every source
             for n, i in enumerate(_items(240, 12))]
    labels = np.array([i.sample.label for i in items])
    x = rng.normal(size=(240, 2, 40)).astype(np.float32)
    x[:, :, :4] += 2.0 * labels[:, None, None]
    folds = group_folds(items, 3)
    nested = nested_soft_targets(x, items, folds, ["flux", "midjourney"], lambda *a, **k: None)
    assert sorted(nested) == [0, 1, 2]
    for fold, targets in nested.items():
        assert np.isnan(targets[folds == fold]).all() and np.isfinite(targets[folds != fold]).all()
    # the held-out fold's pixels changed beyond recognition: the targets of the other folds stay the same
    scrambled = x.copy()
    scrambled[folds == 0] = rng.normal(size=scrambled[folds == 0].shape)
    again = nested_soft_targets(scrambled, items, folds, ["flux", "midjourney"], lambda *a, **k: None)
    assert np.allclose(again[0][folds != 0], nested[0][folds != 0])
    assert not np.allclose(again[1][folds != 1], nested[1][folds != 1])  # fold 1's teachers did see fold 0


def _manifest(folder: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A manifest of small PNGs: (file name, label, source, split) per row."""
    folder.mkdir(parents=True)
    lines = ["path,label,family,generator,source,split"]
    for n, (name, label, source, split) in enumerate(rows):
        value = 40 * n + (7 if folder.name == "b" else 0)  # every file has its own bytes
        Image.new("RGB", (32, 32), (value % 256, 0, 0)).save(folder / name)
        family = "real" if label == "real" else "flux"
        lines.append(f"{name},{label},{family},{family},{source},{split}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def test_a_source_in_val_in_any_manifest_never_trains(tmp_path: Path) -> None:
    a = _manifest(tmp_path / "a", [("1.png", "ai", "owner/shared", "train"), ("2.png", "real", "owner/own", "train"),
                                   ("3.png", "real", "owner/own", "val"), ("4.png", "ai", "owner/other", "train")])
    b = _manifest(tmp_path / "b", [("5.png", "ai", "Owner/Shared", "val"), ("6.png", "real", "x/y", "train")])
    items = load_items([a, b])
    seen = {(i.sample.path.name, i.sample.split) for i in items}
    assert ("1.png", "train") not in seen  # owner/shared is val in b (names compared lower-case)
    assert ("2.png", "train") not in seen  # owner/own has a val image in a itself
    assert {("3.png", "val"), ("4.png", "train"), ("5.png", "val"), ("6.png", "train")} <= seen
