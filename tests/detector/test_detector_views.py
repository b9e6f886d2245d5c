"""Multi-crop inference: the crop boxes, the views of an image, and the mean over views in a verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector import Detector
from detector.checkpoint import create_untrained_checkpoint
from detector.config import CropPolicy, ModelConfig
from detector.preprocess import center_crop, prepare, prepare_views, view_boxes


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_view_boxes_start_at_the_centre_then_the_quarter_points_then_the_corners() -> None:
    # 400 x 300, 224 crops: 176 px of free width, 76 of free height
    assert view_boxes(400, 300, 224, 5) == [
        (88, 38, 312, 262),   # centre, as center_crop cuts it
        (44, 19, 268, 243),   # quarter point, top left
        (132, 57, 356, 281),  # quarter point, bottom right
        (132, 19, 356, 243),  # top right
        (44, 57, 268, 281),   # bottom left
    ]
    assert view_boxes(400, 300, 224, 9)[5:] == [(0, 0, 224, 224), (176, 76, 400, 300),
                                                (176, 0, 400, 224), (0, 76, 224, 300)]


def test_view_boxes_on_a_square_image_are_all_the_whole_image() -> None:
    assert view_boxes(224, 224, 224, 3) == [(0, 0, 224, 224)] * 3


@pytest.mark.parametrize("views", [0, 10])
def test_view_boxes_refuse_counts_out_of_range(views: int) -> None:
    with pytest.raises(ValueError, match="views"):
        view_boxes(400, 300, 224, views)


def test_view_boxes_refuse_an_image_smaller_than_the_crop() -> None:
    with pytest.raises(ValueError, match="cannot crop"):
        view_boxes(200, 300, 224, 1)


def test_prepare_views_first_view_is_prepare() -> None:
    img = noise(640, 480)
    policy = CropPolicy(views=3)
    views = prepare_views(img, policy)
    assert [v.size for v in views] == [(224, 224)] * 3
    assert np.array_equal(np.asarray(views[0]), np.asarray(prepare(img, policy)))
    assert np.array_equal(np.asarray(views[1]), np.asarray(img.crop((104, 64, 328, 288))))  # native resolution
    assert not np.array_equal(np.asarray(views[1]), np.asarray(views[2]))


def test_prepare_views_fits_the_short_side_first() -> None:
    img = noise(2400, 1200)  # short side 1200 > max_short_side 1024: downsampled to 2048 x 1024
    views = prepare_views(img, CropPolicy(views=2))
    fitted = img.resize((2048, 1024), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(views[0]), np.asarray(center_crop(fitted, 224)))


@pytest.mark.parametrize("views", [0, 10, 2.0, True])
def test_crop_policy_refuses_bad_view_counts(views: object) -> None:
    with pytest.raises(ValueError, match="crop.views"):
        CropPolicy(views=views)  # type: ignore[arg-type]


def test_old_checkpoint_configs_mean_one_view() -> None:
    data = ModelConfig().to_dict()
    del data["crop"]["views"]
    assert ModelConfig.from_dict(data).crop.views == 1


@pytest.fixture(scope="module")
def three_view_detector(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    config = ModelConfig(name="aidetect-untrained", crop=CropPolicy(views=3))
    path = create_untrained_checkpoint(tmp_path_factory.mktemp("views") / "ckpt", config, dtype=torch.float32)
    return Detector.from_checkpoint(path, device="cpu")


def test_verdict_is_the_mean_over_views(three_view_detector: Detector) -> None:
    detector = three_view_detector
    imgs = [noise(500, 300, seed) for seed in range(3)]
    batch = torch.stack([detector.preprocess(img) for img in imgs])
    assert batch.shape == (3, 3, 3, 224, 224)
    per_view = [[v.p_ai for v in detector.predict_tensors(batch[:, k])] for k in range(3)]
    expected = np.mean(per_view, axis=0)
    got = [v.p_ai for v in detector.predict(imgs)]
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(per_view[0], abs=1e-6)  # the extra views changed the score


def test_predict_stays_in_image_order_with_views(three_view_detector: Detector) -> None:
    imgs = [noise(500, 300, seed) for seed in range(4)]
    together = [v.p_ai for v in three_view_detector.predict(imgs)]
    alone = [three_view_detector.predict([img])[0].p_ai for img in imgs]
    assert together == pytest.approx(alone, abs=1e-6)


def test_saved_policy_round_trips(tmp_path: Path) -> None:
    config = ModelConfig(crop=CropPolicy(views=5))
    assert ModelConfig.from_dict(config.to_dict()).crop.views == 5


def test_views_setting_overrides_the_checkpoint(three_view_detector: Detector, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from aidetect.settings import get_settings

    monkeypatch.setenv("AIDETECT_VIEWS", "1")
    get_settings.cache_clear()
    one = Detector.from_checkpoint(three_view_detector.model_info.checkpoint_path, device="cpu")
    assert one.config.crop.views == 1
    assert one.preprocess(noise(500, 300)).shape == (1, 3, 224, 224)


def test_a_forward_pass_holds_the_same_number_of_crops_whatever_the_views(three_view_detector: Detector,
                                                                          untrained_ckpt: Path) -> None:
    from detector.backends import CPU_FORWARD_BATCH, forward_batch_size

    assert forward_batch_size(Detector.from_checkpoint(untrained_ckpt, device="cpu")) == CPU_FORWARD_BATCH
    assert forward_batch_size(three_view_detector) == max(1, CPU_FORWARD_BATCH // 3)
