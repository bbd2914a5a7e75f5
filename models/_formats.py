"""The file formats a data set can come in: MNIST's IDX (gzip or raw), Keras' .npz, and Kaggle's CSV.

Each reader gives ``RawData`` or raises ``DataError`` naming the file, what is wrong and how
to fix it; compressed files may inflate to at most ``MAX_INFLATED_BYTES``.
"""

from __future__ import annotations

import csv
import gzip
import math
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import cast

import numpy as np

from ._datacore import DataError, RawData, check_labels, check_not_empty, check_same_image_shape, hw, pixel_max
from ._identify import load_identify

#: Most bytes a compressed file (gzip IDX, a deflated .npz array) may inflate to: 20x MNIST's training
#: images, and a bound on what a small file crafted to inflate to gigabytes can make this process take.
MAX_INFLATED_BYTES = 1 << 30
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------- IDX


def idx_candidates(prefix: str, kind: str) -> list[str]:
    ndim = "idx3" if kind == "images" else "idx1"
    stems = [f"{prefix}-{kind}-{ndim}-ubyte", f"{prefix}-{kind}.{ndim}-ubyte"]
    return [name for stem in stems for name in (f"{stem}.gz", stem)]


def find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for name in idx_candidates(prefix, kind):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """All MNIST-style IDX files present in *folder*, keyed by (prefix, kind)."""
    found = {}
    for prefix in ("train", "t10k"):
        for kind in ("images", "labels"):
            path = find_idx(folder, prefix, kind)
            if path is not None:
                found[prefix, kind] = path
    return found


def load_idx_dir(folder: Path, *, name: str) -> RawData:
    files = find_idx_files(folder)
    for prefix in ("train", "t10k"):
        has = [kind for kind in ("images", "labels") if (prefix, kind) in files]
        if (prefix == "train" and len(has) < 2) or (prefix == "t10k" and len(has) == 1):
            missing = "labels" if "images" in has else "images"
            looked_for = ", ".join(idx_candidates(prefix, missing))
            raise DataError(
                f"{folder}: {prefix}-{missing} IDX file not found (looked for {looked_for}); "
                f"an IDX folder needs both {prefix}-images and {prefix}-labels"
            )

    x_train, y_train = read_idx_pair(files["train", "images"], files["train", "labels"])
    x_test = y_test = None
    if ("t10k", "images") in files:
        x_test, y_test = read_idx_pair(files["t10k", "images"], files["t10k", "labels"])
        check_same_image_shape(x_train, x_test, files["train", "images"], files["t10k", "images"])
    return RawData(name, str(folder), "idx", x_train, y_train, x_test, y_test, max_value=255.0)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images_path, expect_images=True)
    y = read_idx(labels_path, expect_images=False)
    if len(x) != len(y):
        raise DataError(
            f"{images_path}: has {len(x)} images but {labels_path.name} has {len(y)} labels; "
            "the image and label files must come from the same release"
        )
    check_not_empty(len(x), images_path)
    return x, check_labels(y, labels_path)


def read_idx(path: Path, *, expect_images: bool) -> np.ndarray:
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
            shape = idx_shape(path, head, header_len, magic, what)
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


def idx_shape(path: Path, head: bytes, header_len: int, magic: int, what: str) -> tuple[int, ...]:
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


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
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


def npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise DataError(
            f"{path}: cannot read array {key!r} ({exc}); save numeric arrays with numpy.savez"
        ) from exc


def load_npz(path: Path, *, name: str) -> RawData:
    with open_npz(path) as archive:
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
        arrays = {key: npz_array(archive, key, path) for key in names}
    return from_arrays(
        arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
        name=name, source=str(path), fmt="npz", where=path,
    )


def from_arrays(
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
    x_train = as_images(x_train, f"{where}: x_train")
    y_train = as_labels(y_train, f"{where}: y_train", len(x_train))
    if x_test is not None and y_test is not None:
        x_test = as_images(x_test, f"{where}: x_test")
        y_test = as_labels(y_test, f"{where}: y_test", len(x_test))
        check_same_image_shape(x_train, x_test, f"{where}: x_train", "x_test")
    max_value = pixel_max(x_train, f"{where}: x_train")
    if x_test is not None and pixel_max(x_test, f"{where}: x_test") != max_value:
        raise DataError(
            f"{where}: x_train and x_test use different pixel scales (one 0..1, the other 0..255); "
            "save both with the same scale"
        )
    return RawData(name, source, fmt, x_train, y_train, x_test, y_test, max_value)


def as_images(x: np.ndarray, where: str) -> np.ndarray:
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


def as_labels(y: np.ndarray, where: str, count: int) -> np.ndarray:
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


def csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV header ({exc})") from exc
    if not header:
        raise DataError(f"{path}: empty CSV file (no header line); expected a header such as 'label,pixel0,...'")
    return [column.strip().lower() for column in header]


def load_csv(path: Path, *, name: str) -> RawData:
    """Load a training CSV: Identify-the-Digits (filename,label) or Kaggle (label,pixel...)."""
    columns = csv_header(path)
    if "filename" in columns:
        return load_identify(path)
    x, y = read_kaggle_csv(path, columns, need_labels=True)
    y = cast(np.ndarray, y)  # need_labels=True always returns labels
    return RawData(name, str(path), "kaggle-csv", x, y, None, None, max_value=255.0)


def read_kaggle_csv(path: Path, columns: list[str], *, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
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
