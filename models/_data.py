"""Load digit-image data sets for training and prediction.

``load_dataset`` turns a source (``digits``, ``fashion-mnist``, ``mnist`` or a path whose format
is detected) into a train / validation / test ``Dataset``; every problem raises ``DataError``
naming the file and the fix. The sources, formats and splits: docs/internals.md, "models/_data.py".
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._datacore import NUM_CLASSES, DataError, RawData, check_not_empty, pixel_max
from ._formats import (as_images, csv_header, find_idx_files, from_arrays, load_csv, load_idx_dir, load_npz, npz_array,
                       open_npz, read_idx, read_kaggle_csv)
from ._identify import load_tutorial, read_identify_test, read_png, read_png_folder, \
    read_tutorial_test, tutorial_root

__all__ = ["DataError", "Dataset", "DatasetInfo", "load_dataset", "read_images"]

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fraction and fixed seed of the held-out test split for sources without one.
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0
#: Smallest accepted ``limit`` on the training pool.
MIN_LIMIT = 20


_ACCEPTED = (
    "accepted sources: 'digits', 'mnist', 'fashion-mnist' or 'fashion-mnist:FOLDER', "
    "a folder with MNIST-style IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "optional t10k-*), a Keras-style .npz (x_train, y_train, x_test, y_test), "
    "an 'Identify the Digits' folder (train.csv with filename,label + Images/train/*.png, or the Keras "
    "tutorial's Train/train.csv + Train/Images/train/), "
    "or a Kaggle digit-recognizer train.csv (label,pixel0,...) or a folder containing it"
)
_ACCEPTED_PREDICT = (
    "accepted inputs: a .png file, a folder of .png files, an 'Identify the Digits' folder "
    "(test.csv + Images/test/, or the Keras tutorial's Test.csv + Train/Images/test/), "
    "a Kaggle test.csv (pixel0,...) or its folder, "
    "a Keras-style .npz (x_test), or a folder with MNIST-style t10k IDX files"
)


@dataclass(frozen=True)
class DatasetInfo:
    """Where a :class:`Dataset` came from and how it was split."""

    name: str
    source: str
    format: str
    image_shape: tuple[int, int]
    num_classes: int
    fingerprint: str
    n_train: int
    n_val: int
    n_test: int
    test_from: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (``image_shape`` becomes a list)."""
        data = asdict(self)
        data["image_shape"] = list(self.image_shape)
        return data


@dataclass(frozen=True, eq=False)
class Dataset:
    """Float32 images ``(N, H, W)`` and int64 labels, split three ways."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: DatasetInfo


# --------------------------------------------------------------------------- public API


def load_dataset(source: str | os.PathLike[str] = "digits", *, validation_split: float = 0.3, seed: int = 128,
                 center: bool = False, limit: int | None = None, download: bool = True) -> Dataset:
    """Load *source* and split it into train / validation / test sets.

    ``source`` is ``"digits"``, ``"mnist"``, ``"fashion-mnist[:FOLDER]"`` or a path (``~``
    expanded) to an IDX folder, ``.npz``, Identify-the-Digits folder or Kaggle CSV. ``seed``
    draws the validation split and the ``limit`` subsample (a stratified training pool of at
    least ``MIN_LIMIT``); ``center`` subtracts ``x_train``'s per-pixel mean; ``download`` lets
    Keras fetch MNIST. ``DataError`` for a missing, unsupported or malformed source, or a bad
    parameter.
    """
    _check_parameters(validation_split, limit)
    raw = _load_raw(source, download=download)
    pool, x_test_raw, y_test, test_from = _test_part(raw)
    if limit is not None and limit < len(pool):
        keep, _ = _split_indices(raw.y_train[pool], train_size=limit, seed=seed, source=raw.source, what="the limit")
        pool = pool[keep]
    train_part, val_part = _split_indices(
        raw.y_train[pool], test_size=validation_split, seed=seed, source=raw.source, what="a validation set"
    )
    train_idx, val_idx = pool[train_part], pool[val_part]
    x_train, x_val, x_test = (_scale(x, raw.max_value) for x in (raw.x_train[train_idx], raw.x_train[val_idx],
                                                                   x_test_raw))
    if center:
        mean = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
        x_train -= mean
        x_val -= mean
        x_test -= mean
    height, width = x_train.shape[1:]
    info = DatasetInfo(name=raw.name, source=raw.source, format=raw.format, image_shape=(int(height), int(width)),
                       num_classes=NUM_CLASSES,
                       fingerprint=_fingerprint(raw.x_train, raw.y_train, raw.x_test, raw.y_test),
                       n_train=len(train_idx), n_val=len(val_idx), n_test=len(y_test), test_from=test_from)
    return Dataset(x_train=x_train, y_train=raw.y_train[train_idx], x_val=x_val, y_val=raw.y_train[val_idx],
                   x_test=x_test, y_test=np.asarray(y_test, dtype=np.int64), info=info)


def _test_part(raw):
    """The training pool's indices and the test images and labels: the source's own, or a held-out part."""
    if raw.x_test is None or raw.y_test is None:
        pool, test_idx = _split_indices(
            raw.y_train, test_size=TEST_FRACTION, seed=TEST_SPLIT_SEED, source=raw.source, what="a test set"
        )
        return pool, raw.x_train[test_idx], raw.y_train[test_idx], "held-out"
    return np.arange(len(raw.y_train)), raw.x_test, raw.y_test, "source"


def read_images(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str] | None, str]:
    """Read images to predict from *path*.

    Returns ``(x, ids, format)``: float32 images ``(N, H, W)`` in ``[0, 1]``;
    the file names for PNG layouts (``None`` for IDX, npz and Kaggle CSV, whose
    images are numbered 1..N); and the detected format (``"png"``,
    ``"identify-the-digits"``, ``"kaggle-csv"``, ``"npz"`` or ``"idx"``).
    Labels, where present, are ignored.
    """
    p = _existing_path(path, _ACCEPTED_PREDICT)
    if p.is_file():
        x, ids, fmt = _read_images_file(p)
    else:
        x, ids, fmt = _read_images_dir(p)
    return _scale(x, pixel_max(x, p)), ids, fmt


# --------------------------------------------------------------------------- source dispatch


def _check_parameters(validation_split: float, limit: int | None) -> None:
    if not 0.0 < float(validation_split) < 1.0:
        raise DataError(
            f"validation_split must be between 0 and 1 (exclusive), got {validation_split}; "
            "use e.g. 0.3 for a 70/30 train/validation split"
        )
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < MIN_LIMIT):
        raise DataError(f"limit must be an integer of at least {MIN_LIMIT}, got {limit!r}; or leave it unset")


def _load_raw(source: str | os.PathLike[str], *, download: bool) -> RawData:
    if isinstance(source, str):
        if source == "digits":
            return _load_digits()
        if source == "mnist":
            return _load_mnist(download=download)
        if source == "fashion-mnist" or source.startswith("fashion-mnist:"):
            folder = source.partition(":")[2]
            return _load_fashion_mnist(Path(folder).expanduser() if folder else FASHION_MNIST_DIR)

    path = _existing_path(source, _ACCEPTED)
    if path.is_dir():
        if find_idx_files(path):
            return load_idx_dir(path, name=path.name)
        root = tutorial_root(path)
        if root is not None:
            return load_tutorial(root)
        if (path / "train.csv").is_file():
            return load_csv(path / "train.csv", name=path.name)
    elif path.suffix.lower() == ".npz":
        return load_npz(path, name=path.name)
    elif path.suffix.lower() == ".csv":
        return load_csv(path, name=path.name)
    raise DataError(f"{path}: unsupported dataset format; {_ACCEPTED}")


def _existing_path(source: str | os.PathLike[str], accepted: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; {accepted}")
    if not (path.is_file() or path.is_dir()):  # reading a named pipe or a device would wait or never end
        raise DataError(f"{path}: not a regular file or folder (a named pipe, socket or device); save the data "
                        f"to a file and pass its path")
    return path.resolve()


def _load_digits() -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return RawData(
        name="digits",
        source="sklearn.datasets.load_digits",
        format="sklearn",
        x_train=digits.images.astype(np.uint8),  # integer values 0..16
        y_train=digits.target.astype(np.int64),
        x_test=None,
        y_test=None,
        max_value=16.0,
    )


def _load_fashion_mnist(folder: Path) -> RawData:
    if not folder.is_dir():
        raise DataError(
            f"{folder}: Fashion-MNIST folder not found; install it with `apt-get install dataset-fashion-mnist` "
            "or pass a folder with its IDX files as 'fashion-mnist:/path/to/folder'"
        )
    raw = load_idx_dir(folder, name="fashion-mnist")
    if raw.x_test is None:
        raise DataError(
            f"{folder}: t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz not found; "
            "Fashion-MNIST needs both train-* and t10k-* IDX files"
        )
    return raw


def _keras_home() -> Path:
    home = os.environ.get("KERAS_HOME")
    return Path(home).expanduser() if home else Path.home() / ".keras"


def _load_mnist(*, download: bool) -> RawData:
    cache = _keras_home() / "datasets" / "mnist.npz"
    if cache.is_file():
        return load_npz(cache, name="mnist")
    hint = (
        "download mnist.npz on a machine with internet access and pass its path "
        f"(e.g. --dataset /path/to/mnist.npz) or place it at {cache}"
    )
    if not download:
        raise DataError(f"MNIST is not cached at {cache} and downloading is disabled; {hint}")
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # network, SSL, disk or import failures all mean the same to the user
        raise DataError(f"could not download MNIST ({exc}); {hint}") from exc
    where = str(cache) if cache.is_file() else "keras.datasets.mnist.load_data"
    return from_arrays(x_train, y_train, x_test, y_test, name="mnist", source=where, fmt="npz")


# --------------------------------------------------------------------------- read_images helpers


def _read_images_file(path: Path) -> tuple[np.ndarray, list[str] | None, str]:
    suffix = path.suffix.lower()
    if suffix == ".png":
        return read_png(path)[np.newaxis], [path.name], "png"
    if suffix == ".npz":
        with open_npz(path) as archive:
            if "x_test" not in archive.files:
                raise DataError(
                    f"{path}: no x_test array (found: {', '.join(sorted(archive.files)) or 'none'}); "
                    "images to predict are read from x_test"
                )
            x = npz_array(archive, "x_test", path)
        return as_images(x, f"{path}: x_test"), None, "npz"
    if suffix == ".csv":
        columns = csv_header(path)
        if "filename" in columns:
            return read_identify_test(path)
        x, _ = read_kaggle_csv(path, columns, need_labels=False)
        return x, None, "kaggle-csv"
    if "idx3-ubyte" in path.name:
        x = read_idx(path, expect_images=True)
        check_not_empty(len(x), path)
        return x, None, "idx"
    raise DataError(f"{path}: unsupported file for prediction; {_ACCEPTED_PREDICT}")


def _read_images_dir(folder: Path) -> tuple[np.ndarray, list[str] | None, str]:
    idx_files = find_idx_files(folder)
    if idx_files:
        if ("t10k", "images") not in idx_files:
            raise DataError(
                f"{folder}: no t10k-images-idx3-ubyte[.gz]; images to predict are read from the t10k IDX file"
            )
        path = idx_files["t10k", "images"]
        x = read_idx(path, expect_images=True)
        check_not_empty(len(x), path)
        return x, None, "idx"
    root = tutorial_root(folder)
    if root is not None:
        return read_tutorial_test(root)
    if (folder / "test.csv").is_file():
        return _read_images_file(folder / "test.csv")
    found = read_png_folder(folder)
    if found is not None:
        return found
    raise DataError(f"{folder}: no images found; {_ACCEPTED_PREDICT}")


# --------------------------------------------------------------------------- checks and transforms


def _scale(x: np.ndarray, max_value: float) -> np.ndarray:
    out = x.astype(np.float32)  # always a fresh, writable copy
    if max_value != 1.0:
        out /= np.float32(max_value)
    return out


def _fingerprint(*arrays: np.ndarray | None) -> str:
    """First 16 hex digits of a sha256 over the arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none;")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:16]


def _split_indices(
    y: np.ndarray,
    *,
    seed: int,
    source: str,
    what: str,
    test_size: float | None = None,
    train_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` like ``train_test_split``, stratified by *y* when possible.

    Stratification needs two examples per class and at least one example of
    each class on both sides; when that cannot hold (e.g. tiny ``limit``s)
    the split falls back to a plain shuffled split.
    """
    n = len(y)
    n_first = train_size if train_size is not None else n - math.ceil(float(test_size) * n)
    n_second = n - n_first
    if n_first < 1 or n_second < 1:
        raise DataError(f"{source}: too few examples ({n}) to split off {what}; use a larger data set")
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 and min(n_first, n_second) >= len(counts) else None
    # imported here: scikit-learn takes seconds to import, and commands that only read a
    # study database (list, show, the dashboard) never split data
    from sklearn.model_selection import train_test_split

    first, second = train_test_split(
        np.arange(n), test_size=test_size, train_size=train_size, random_state=seed, stratify=stratify
    )
    return first, second
