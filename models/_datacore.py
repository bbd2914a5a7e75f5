"""What the data readers share: the error they raise, raw unsplit data, label and count checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_CLASSES = 10


class DataError(ValueError):
    """A data source is missing, unsupported or malformed.

    The message names the file or source, what is wrong and how to fix it.
    """


@dataclass
class RawData:
    """Unscaled, unsplit data as read from a source."""

    name: str
    source: str
    format: str
    x_train: np.ndarray  # (N, H, W), raw pixel values
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    max_value: float  # divide by this to scale into [0, 1]


def check_not_empty(count: int, where: Path | str) -> None:
    if count == 0:
        raise DataError(f"{where}: contains no images (0 images); use a file with at least one example")


def check_labels(y: np.ndarray, where: Path | str) -> np.ndarray:
    """Return *y* as int64 after checking every label is in 0..9."""
    y = np.asarray(y)
    bad = np.unique(y[(y < 0) | (y >= NUM_CLASSES)])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise DataError(
            f"{where}: labels must be 0..{NUM_CLASSES - 1}, found label{'s' if bad.size > 1 else ''} {shown}; "
            "fix or drop those rows"
        )
    return y.astype(np.int64)


def hw(shape: tuple[int, ...]) -> str:
    """A shape as ``HxW`` (``NxHxW``...)."""
    return "x".join(str(d) for d in shape)


def check_same_image_shape(a: np.ndarray, b: np.ndarray, where_a: Path | str, where_b: Path | str) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise DataError(
            f"{where_a}: images are {hw(a.shape[1:])} but {where_b} has {hw(b.shape[1:])} images; "
            "train and test images must have the same size"
        )


def pixel_max(x: np.ndarray, where: Path | str) -> float:
    """The divisor that scales raw pixels *x* into [0, 1]: 1 for floats in [0, 1], else 255."""
    if x.size == 0:
        return 255.0
    low, high = x.min(), x.max()
    if np.issubdtype(x.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{where}: images contain NaN or infinite values")
    if low < 0 or high > 255:
        raise DataError(f"{where}: pixel values must be 0..255 (or 0..1 floats), found {low}..{high}")
    if np.issubdtype(x.dtype, np.floating) and high <= 1:
        return 1.0
    return 255.0
