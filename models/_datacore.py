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
