"""Load digit-image data sets for training and prediction.

``load_dataset`` turns a *source* into a :class:`Dataset` of float32 image
arrays ``(N, H, W)`` scaled to ``[0, 1]`` with int64 labels ``0..9``, split
into train / validation / test parts.  Sources:

* ``"digits"`` (default) - scikit-learn's bundled 8x8 digits;
* ``"fashion-mnist"`` or ``"fashion-mnist:FOLDER"`` - IDX files from the Debian
  package ``dataset-fashion-mnist`` (or from FOLDER);
* ``"mnist"`` - the Keras cache file ``$KERAS_HOME/datasets/mnist.npz``,
  downloaded through Keras when missing and allowed;
* a path, whose format is detected from what is there:

  - a folder of MNIST-style IDX files (``train-images-idx3-ubyte[.gz]`` ...),
  - a Keras-style ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``),
  - an "Identify the Digits" folder (``train.csv`` + ``Images/train/*.png``), or
    the Keras tutorial's data folder (``Train/train.csv``, ``Train/Images/train/``,
    ``Test.csv``) or its ``Train/`` (read by ``models._identify``),
  - a Kaggle digit-recognizer CSV (``label,pixel0,...``) or its folder.

Splits: sources without a labelled test set get a fixed stratified 20 % test
split (``random_state=0``, independent of ``seed``); the remaining training
pool is split into train / validation with
``train_test_split(test_size=validation_split, random_state=seed, stratify=y)``
as in the Keras tutorial.

``read_images`` reads the images to *predict* from any of these layouts.

Every problem with the data raises :class:`DataError` with one message that
names the file, says what is wrong and how to fix it.  Only numpy, gzip, csv,
PIL and scikit-learn are used here; Keras is imported lazily, and only to
download MNIST.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import os
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._datacore import NUM_CLASSES, DataError, RawData, check_labels, check_not_empty, hw
from ._identify import load_identify, load_tutorial, read_identify_test, read_png, read_png_folder, \
    read_tutorial_test, tutorial_root

__all__ = ["DataError", "Dataset", "DatasetInfo", "load_dataset", "read_images"]

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fraction and fixed seed of the held-out test split for sources without one.
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0
#: Smallest accepted ``limit`` on the training pool.
MIN_LIMIT = 20
#: Most bytes a compressed file (gzip IDX, a deflated .npz array) may inflate to: 20x MNIST's training
#: images, and a bound on what a small file crafted to inflate to gigabytes can make this process take.
MAX_INFLATED_BYTES = 1 << 30

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"

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
    return _scale(x, _max_value(x, p)), ids, fmt


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
        if _find_idx_files(path):
            return _load_idx_dir(path, name=path.name)
        root = tutorial_root(path)
        if root is not None:
            return load_tutorial(root)
        if (path / "train.csv").is_file():
            return _load_csv(path / "train.csv", name=path.name)
    elif path.suffix.lower() == ".npz":
        return _load_npz(path, name=path.name)
    elif path.suffix.lower() == ".csv":
        return _load_csv(path, name=path.name)
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
    raw = _load_idx_dir(folder, name="fashion-mnist")
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
        return _load_npz(cache, name="mnist")
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
    return _from_arrays(x_train, y_train, x_test, y_test, name="mnist", source=where, fmt="npz")


# --------------------------------------------------------------------------- IDX


def _idx_candidates(prefix: str, kind: str) -> list[str]:
    ndim = "idx3" if kind == "images" else "idx1"
    stems = [f"{prefix}-{kind}-{ndim}-ubyte", f"{prefix}-{kind}.{ndim}-ubyte"]
    return [name for stem in stems for name in (f"{stem}.gz", stem)]


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for name in _idx_candidates(prefix, kind):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """All MNIST-style IDX files present in *folder*, keyed by (prefix, kind)."""
    found = {}
    for prefix in ("train", "t10k"):
        for kind in ("images", "labels"):
            path = _find_idx(folder, prefix, kind)
            if path is not None:
                found[prefix, kind] = path
    return found


def _load_idx_dir(folder: Path, *, name: str) -> RawData:
    files = _find_idx_files(folder)
    for prefix in ("train", "t10k"):
        has = [kind for kind in ("images", "labels") if (prefix, kind) in files]
        if (prefix == "train" and len(has) < 2) or (prefix == "t10k" and len(has) == 1):
            missing = "labels" if "images" in has else "images"
            looked_for = ", ".join(_idx_candidates(prefix, missing))
            raise DataError(
                f"{folder}: {prefix}-{missing} IDX file not found (looked for {looked_for}); "
                f"an IDX folder needs both {prefix}-images and {prefix}-labels"
            )

    x_train, y_train = _read_idx_pair(files["train", "images"], files["train", "labels"])
    x_test = y_test = None
    if ("t10k", "images") in files:
        x_test, y_test = _read_idx_pair(files["t10k", "images"], files["t10k", "labels"])
        _check_same_image_shape(x_train, x_test, files["train", "images"], files["t10k", "images"])
    return RawData(name, str(folder), "idx", x_train, y_train, x_test, y_test, max_value=255.0)


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x = _read_idx(images_path, expect_images=True)
    y = _read_idx(labels_path, expect_images=False)
    if len(x) != len(y):
        raise DataError(
            f"{images_path}: has {len(x)} images but {labels_path.name} has {len(y)} labels; "
            "the image and label files must come from the same release"
        )
    check_not_empty(len(x), images_path)
    return x, check_labels(y, labels_path)


def _read_idx(path: Path, *, expect_images: bool) -> np.ndarray:
    """Read an MNIST-style IDX file, gunzipped when it is gzip (by content): uint8 images ``(N, H, W)`` or labels.

    Only the bytes its header declares (and one more, to tell trailing bytes) are read or inflated.
    """
    magic, what = (_IDX_IMAGES_MAGIC, "an image") if expect_images else (_IDX_LABELS_MAGIC, "a label")
    header_len = 16 if expect_images else 8
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as f:
            head = f.read(header_len)
            shape = _idx_shape(path, head, header_len, magic, what)
            expected = math.prod(shape)
            if gzipped and expected > MAX_INFLATED_BYTES:
                raise DataError(
                    f"{path}: IDX header says {hw(shape)} ({expected} bytes of data), more than the "
                    f"{MAX_INFLATED_BYTES} bytes read from a gzip file; gunzip it and pass the plain IDX file"
                )
            data = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or unreadable gzip file ({exc}); download it again") from exc
    if len(data) != expected:
        problem, has = ("truncated IDX file", str(len(data))) if len(data) < expected else \
            ("IDX file has trailing bytes", "more")
        raise DataError(
            f"{path}: {problem}: header says {hw(shape)} ({expected} bytes of data) but the file has {has}; "
            "download it again"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _idx_shape(path: Path, head: bytes, header_len: int, magic: int, what: str) -> tuple[int, ...]:
    """The dimensions an IDX header declares, after checking its length and magic number."""
    if len(head) < header_len:
        raise DataError(
            f"{path}: truncated IDX file: {len(head)} bytes, shorter than the {header_len}-byte header; "
            "download it again"
        )
    header = np.frombuffer(head, dtype=">u4")
    if header[0] != magic:
        raise DataError(
            f"{path}: wrong IDX magic number {header[0]} (expected {magic} for {what} file); "
            "is this an MNIST-style IDX file?"
        )
    return tuple(int(d) for d in header[1:])


# --------------------------------------------------------------------------- npz


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); save it with numpy.savez") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: not an .npz archive (a single array?); save it with numpy.savez(x_train=..., ...)"
        )
    deflated = [i for i in archive.zip.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if sum(i.file_size for i in deflated) > MAX_INFLATED_BYTES:  # what its compressed arrays would inflate to
        archive.close()
        raise DataError(
            f"{path}: its compressed arrays inflate to {sum(i.file_size for i in deflated)} bytes, more than the "
            f"{MAX_INFLATED_BYTES} read from compressed data; save it uncompressed with numpy.savez"
        )
    return archive


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise DataError(
            f"{path}: cannot read array {key!r} ({exc}); save numeric arrays with numpy.savez"
        ) from exc


def _load_npz(path: Path, *, name: str) -> RawData:
    with _open_npz(path) as archive:
        keys = set(archive.files)
        missing = {"x_train", "y_train"} - keys
        if len({"x_test", "y_test"} & keys) == 1:  # a test set needs both arrays
            missing |= {"x_test", "y_test"} - keys
        if missing:
            found = ", ".join(sorted(keys)) or "none"
            raise DataError(
                f"{path}: missing array(s) {', '.join(sorted(missing))} (found: {found}); "
                "a Keras-style .npz needs x_train, y_train and optionally x_test, y_test"
            )
        names = [key for key in ("x_train", "y_train", "x_test", "y_test") if key in keys]
        arrays = {key: _npz_array(archive, key, path) for key in names}
    return _from_arrays(
        arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
        name=name, source=str(path), fmt="npz", where=path,
    )


def _from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    *,
    name: str,
    source: str,
    fmt: str,
    where: Path | str = "",
) -> RawData:
    """Validate Keras-style arrays and wrap them as raw data."""
    where = where or source
    x_train = _as_images(x_train, f"{where}: x_train")
    y_train = _as_labels(y_train, f"{where}: y_train", len(x_train))
    if x_test is not None and y_test is not None:
        x_test = _as_images(x_test, f"{where}: x_test")
        y_test = _as_labels(y_test, f"{where}: y_test", len(x_test))
        _check_same_image_shape(x_train, x_test, f"{where}: x_train", "x_test")
    max_value = _max_value(x_train, f"{where}: x_train")
    if x_test is not None and _max_value(x_test, f"{where}: x_test") != max_value:
        raise DataError(
            f"{where}: x_train and x_test use different pixel scales (one 0..1, the other 0..255); "
            "save both with the same scale"
        )
    return RawData(name, source, fmt, x_train, y_train, x_test, y_test, max_value)


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    """Check an image array is numeric, non-empty ``(N, H, W)`` or ``(N, H, W, 1)``; drop the channel."""
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise DataError(
            f"{where} has shape {x.shape}; expected (N, H, W) or (N, H, W, 1) grayscale images"
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{where} has dtype {x.dtype}; expected uint8 0..255 or float 0..1 pixel values")
    check_not_empty(len(x), where)
    return x


def _as_labels(y: np.ndarray, where: str, count: int) -> np.ndarray:
    """Check a label vector is 1-D (or ``(N, 1)``), integral and matches *count* images."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}; expected a vector of integer class labels 0..9")
    if len(y) != count:
        raise DataError(f"{where} has {len(y)} labels but there are {count} images; the counts must match")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y) & (y == np.round(y))):
            raise DataError(f"{where} has non-integer labels (dtype {y.dtype}); expected class labels 0..9")
    return check_labels(y, where)


# --------------------------------------------------------------------------- CSV layouts


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV header ({exc})") from exc
    if not header:
        raise DataError(f"{path}: empty CSV file (no header line); expected a header such as 'label,pixel0,...'")
    return [column.strip().lower() for column in header]


def _load_csv(path: Path, *, name: str) -> RawData:
    """Load a training CSV: Identify-the-Digits (filename,label) or Kaggle (label,pixel...)."""
    columns = _csv_header(path)
    if "filename" in columns:
        return load_identify(path)
    x, y = _read_kaggle_csv(path, columns, need_labels=True)
    y = cast(np.ndarray, y)  # need_labels=True always returns labels
    return RawData(name, str(path), "kaggle-csv", x, y, None, None, max_value=255.0)


def _read_kaggle_csv(path: Path, columns: list[str], *, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle digit-recognizer CSV: uint8 images ``(N, S, S)`` and labels (or None)."""
    pixel_cols = [i for i, column in enumerate(columns) if column.startswith("pixel")]
    label_col = columns.index("label") if "label" in columns else None
    if not pixel_cols:
        raise DataError(
            f"{path}: unrecognised CSV header ({','.join(columns[:4])}...); expected 'filename,label' "
            "(Identify the Digits) or 'label,pixel0,...,pixel783' (Kaggle digit-recognizer)"
        )
    if need_labels and label_col is None:
        raise DataError(
            f"{path}: no 'label' column (header starts {','.join(columns[:3])}); a training CSV needs "
            "'label,pixel0,...' - is this the unlabelled test.csv? pass train.csv instead"
        )
    side = math.isqrt(len(pixel_cols))
    if side * side != len(pixel_cols):
        raise DataError(
            f"{path}: {len(pixel_cols)} pixel columns is not a perfect square, so the images cannot be square; "
            "expected e.g. 784 columns pixel0..pixel783 for 28x28 images"
        )
    unknown = set(range(len(columns))) - set(pixel_cols) - {label_col}
    if unknown:
        extra = ", ".join(columns[i] for i in sorted(unknown))
        raise DataError(f"{path}: unexpected column(s) {extra}; expected only 'label' and pixel columns")

    try:
        with path.open(newline="", encoding="utf-8-sig") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            f.readline()
            table = np.loadtxt(f, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: malformed CSV ({exc}; rows counted after the header)") from exc
    check_not_empty(len(table), path)
    if table.shape[1] != len(columns):
        raise DataError(f"{path}: rows have {table.shape[1]} values but the header has {len(columns)} columns")

    pixels = table[:, pixel_cols]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixel values must be 0..255, found {pixels.min()}..{pixels.max()}")
    x = pixels.astype(np.uint8).reshape(len(table), side, side)
    y = check_labels(table[:, label_col], path) if need_labels and label_col is not None else None
    return x, y


# --------------------------------------------------------------------------- read_images helpers


def _read_images_file(path: Path) -> tuple[np.ndarray, list[str] | None, str]:
    suffix = path.suffix.lower()
    if suffix == ".png":
        return read_png(path)[np.newaxis], [path.name], "png"
    if suffix == ".npz":
        with _open_npz(path) as archive:
            if "x_test" not in archive.files:
                raise DataError(
                    f"{path}: no x_test array (found: {', '.join(sorted(archive.files)) or 'none'}); "
                    "images to predict are read from x_test"
                )
            x = _npz_array(archive, "x_test", path)
        return _as_images(x, f"{path}: x_test"), None, "npz"
    if suffix == ".csv":
        columns = _csv_header(path)
        if "filename" in columns:
            return read_identify_test(path)
        x, _ = _read_kaggle_csv(path, columns, need_labels=False)
        return x, None, "kaggle-csv"
    if "idx3-ubyte" in path.name:
        x = _read_idx(path, expect_images=True)
        check_not_empty(len(x), path)
        return x, None, "idx"
    raise DataError(f"{path}: unsupported file for prediction; {_ACCEPTED_PREDICT}")


def _read_images_dir(folder: Path) -> tuple[np.ndarray, list[str] | None, str]:
    idx_files = _find_idx_files(folder)
    if idx_files:
        if ("t10k", "images") not in idx_files:
            raise DataError(
                f"{folder}: no t10k-images-idx3-ubyte[.gz]; images to predict are read from the t10k IDX file"
            )
        path = idx_files["t10k", "images"]
        x = _read_idx(path, expect_images=True)
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


def _check_same_image_shape(a: np.ndarray, b: np.ndarray, where_a: Path | str, where_b: Path | str) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise DataError(
            f"{where_a}: images are {hw(a.shape[1:])} but {where_b} has {hw(b.shape[1:])} images; "
            "train and test images must have the same size"
        )


def _max_value(x: np.ndarray, where: Path | str) -> float:
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
