"""Low-level traces of a crop that ImageNet features average away: the inputs of the forensic teachers.

Generators upsample: their pixels repeat a 2x2 (or 4x4, 8x8) structure that camera pipelines do not
leave. Two cheap descriptors of one ``S x S`` RGB crop make that visible to a small classifier:

* :func:`npr_residual`: the neighbouring-pixel residual of NPR (Tan et al., CVPR 2024): each pixel minus
  the top-left pixel of its 2x2 cell (``x - up(down(x))`` with nearest-neighbour resampling);
* :func:`residual_spectrum`: the azimuthally averaged log power spectrum of a high-pass residual, plus the
  power at the frequencies an upsampling grid of period 2, 4 and 8 puts peaks on (SAFE, 2024; Corvi 2023).

:func:`forensic_features` concatenates summary statistics of both into one fixed-length vector.
"""

from __future__ import annotations

import numpy as np

SPECTRUM_BINS = 24
GRID_PERIODS = (2, 4, 8)


def npr_residual(x: np.ndarray) -> np.ndarray:
    """``x - up(down(x))`` for an ``(H, W[, C])`` array: pixel minus the top-left pixel of its 2x2 cell.

    H and W are cut to even sizes. Position (0, 0) of every cell is therefore always zero.
    """
    x = np.asarray(x, dtype=np.float32)
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[:h, :w]
    anchor = np.repeat(np.repeat(x[::2, ::2], 2, axis=0), 2, axis=1)
    return x - anchor


def highpass(gray: np.ndarray) -> np.ndarray:
    """The gray image minus its 3x3 box mean (edges replicated): the noise-like residual."""
    padded = np.pad(np.asarray(gray, dtype=np.float32), 1, mode="edge")
    h, w = gray.shape
    box = sum(padded[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
    return gray - box


def radial_profile(power: np.ndarray, bins: int) -> np.ndarray:
    """Mean of a centred ``(H, W)`` spectrum over ``bins`` rings from DC to the Nyquist radius."""
    h, w = power.shape
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot((yy - h // 2) / (h / 2), (xx - w // 2) / (w / 2))  # 1.0 at the axis Nyquist
    ring = np.minimum((radius * bins).astype(int), bins - 1)
    sums = np.bincount(ring.ravel(), weights=power.ravel(), minlength=bins)
    counts = np.bincount(ring.ravel(), minlength=bins)
    return sums / np.maximum(counts, 1)


def residual_spectrum(gray: np.ndarray) -> np.ndarray:
    """Log power of the high-pass residual: ``SPECTRUM_BINS`` rings, then the grid-peak contrasts.

    For each period p in ``GRID_PERIODS`` the contrast is log power at frequency 1/p on both axes minus
    the median log power of the spectrum (how much a p-pixel grid stands out).
    """
    residual = highpass(gray)
    h, w = residual.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spectrum = np.fft.fftshift(np.fft.fft2(residual * window))
    log_power = np.log1p(np.abs(spectrum) ** 2)
    median = float(np.median(log_power))
    peaks = []
    for period in GRID_PERIODS:
        fy, fx = h // 2 + h // period, w // 2 + w // period
        fy, fx = min(fy, h - 1), min(fx, w - 1)
        peaks.append(max(log_power[fy, w // 2], log_power[h // 2, fx], log_power[fy, fx]) - median)
    return np.concatenate([radial_profile(log_power, SPECTRUM_BINS) - median, peaks]).astype(np.float32)


def forensic_features(rgb: np.ndarray) -> np.ndarray:
    """One vector per ``(S, S, 3)`` uint8 crop: NPR residual statistics per cell position and channel,
    then the residual spectrum of the gray image. Length: :data:`FORENSIC_DIM`."""
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    residual = npr_residual(x)
    stats = []
    for dy, dx in ((0, 1), (1, 0), (1, 1)):  # (0, 0) is always zero
        cell = residual[dy::2, dx::2]
        stats.append(np.abs(cell).mean(axis=(0, 1)))
        stats.append(cell.std(axis=(0, 1)))
    gray = x.mean(axis=2)
    return np.concatenate([np.log(np.concatenate(stats) + 1e-4), residual_spectrum(gray)]).astype(np.float32)


FORENSIC_DIM = 3 * 2 * 3 + SPECTRUM_BINS + len(GRID_PERIODS)
