"""Read the "Identify the Digits" data: PNG files that a CSV names, and folders of PNGs.

Why it is built this way: docs/internals.md, "models/_identify.py".
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._datacore import NUM_CLASSES, DataError, RawData, check_not_empty, hw

FORMAT = "identify-the-digits"
#: The spellings of the tutorial's file naming the images to predict, in the order looked for.
TEST_CSV_NAMES = ("Test.csv", "test.csv")

#: Images to predict: uint8 ``(N, H, W)``, their file names, the format read.
Images = tuple[np.ndarray, list[str], str]


class Row(NamedTuple):
    """One row of an Identify-the-Digits CSV."""

    line: int
    filename: str
    label: int | None


# --------------------------------------------------------------------------- the tutorial's data folder


def tutorial_root(folder: Path) -> Path | None:
    """The tutorial's data folder that *folder* is, or whose ``Train/`` folder it is; else None."""
    if (folder / "Train" / "train.csv").is_file():
        return folder
    if folder.name == "Train" and (folder / "train.csv").is_file() and _tutorial_test_csv(folder.parent):
        return folder.parent
    return None


def load_tutorial(root: Path) -> RawData:
    """The labelled images of ``Train/train.csv`` in the tutorial's data folder *root*."""
    return replace(load_identify(root / "Train" / "train.csv"), name=root.name, source=str(root))


def read_tutorial_test(root: Path) -> Images:
    """The images that the tutorial's ``Test.csv`` names, from ``Train/Images/test/``, in its order."""
    test_csv = _tutorial_test_csv(root)
    if test_csv is None:
        raise DataError(
            f"{root}: no Test.csv; in the tutorial's layout Test.csv (column filename) names the images "
            "to predict, which are read from Train/Images/test/"
        )
    return read_identify_test(test_csv)


def _tutorial_test_csv(root: Path) -> Path | None:
    return next((root / name for name in TEST_CSV_NAMES if (root / name).is_file()), None)


# --------------------------------------------------------------------------- CSV + Images/ folders


def load_identify(csv_path: Path) -> RawData:
    """Load the labelled images of a ``train.csv`` from ``Images/train/`` beside it."""
    root = csv_path.parent
    image_dir = root / "Images" / "train"
    if not image_dir.is_dir():
        raise DataError(
            f"{image_dir}: folder not found; an Identify-the-Digits data set needs train.csv next to "
            "Images/train/ holding the PNG files it names"
        )
    rows = read_identify_csv(csv_path, need_labels=True)
    x = read_png_stack([image_dir / row.filename for row in rows], csv_path, lines=[row.line for row in rows])
    y = np.array([row.label for row in rows], dtype=np.int64)
    return RawData(root.name, str(root), FORMAT, x, y, None, None, max_value=255.0)


def read_identify_test(csv_path: Path) -> Images:
    """The images a ``test.csv`` names, from ``Images/test/`` beside it (the tutorial's: ``Train/Images/test/``)."""
    image_dir = csv_path.parent / "Images" / "test"
    if not image_dir.is_dir() and (csv_path.parent / "Train" / "Images" / "test").is_dir():
        image_dir = csv_path.parent / "Train" / "Images" / "test"
    if not image_dir.is_dir():
        raise DataError(
            f"{image_dir}: folder not found; the images {csv_path.name} names are read from Images/test/ "
            "beside it (Train/Images/test/ in the Keras tutorial's layout)"
        )
    rows = read_identify_csv(csv_path, need_labels=False)
    names = [row.filename for row in rows]
    x = read_png_stack([image_dir / name for name in names], csv_path, lines=[row.line for row in rows])
    return x, names, FORMAT


def read_identify_csv(path: Path, *, need_labels: bool) -> list[Row]:
    """The rows of an Identify-the-Digits CSV: ``filename`` and, to train, ``label`` 0..9."""
    needed = ("filename", "label") if need_labels else ("filename",)
    rows: list[Row] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in reader.fieldnames or []]
            reader.fieldnames = fields
            missing = [c for c in needed if c not in fields]
            if missing:
                raise DataError(
                    f"{path}: no {' or '.join(repr(c) for c in missing)} column (columns: "
                    f"{','.join(fields) or 'none'}); this CSV needs the header line '{','.join(needed)}'"
                )
            for row in reader:
                rows.append(_parse_row(row, path, reader.line_num, need_labels=need_labels))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from exc
    check_not_empty(len(rows), path)
    return rows


def _parse_row(row: dict[str, str | None], path: Path, line: int, *, need_labels: bool) -> Row:
    filename = (row.get("filename") or "").strip()
    if not filename:
        raise DataError(f"{path}, line {line}: empty filename; every row needs a PNG file name")
    return Row(line, filename, _parse_label(row.get("label"), path, line) if need_labels else None)


def _parse_label(text: str | None, path: Path, line: int) -> int:
    text = (text or "").strip()
    try:
        label = int(text)
    except ValueError as exc:
        raise DataError(f"{path}, line {line}: label {text!r} is not an integer 0..9; fix or drop that row") from exc
    if not 0 <= label < NUM_CLASSES:
        raise DataError(
            f"{path}, line {line}: labels must be 0..{NUM_CLASSES - 1}, found label {label}; fix or drop that row"
        )
    return label


# --------------------------------------------------------------------------- PNG images


def read_png(path: Path) -> np.ndarray:
    """Read one image file as uint8 grayscale ``(H, W)``; one of more than Pillow's 89 M pixels is refused."""
    if path.exists() and not path.is_file():  # a named pipe would block the read
        raise DataError(f"{path}: not a regular file (a named pipe, socket or device); replace it with a PNG file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return np.asarray(image.convert("L"), dtype=np.uint8)
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: image file not found; check the file names in the CSV and the Images/ folder"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: unreadable image ({exc}); replace or remove the file") from exc


def read_png_stack(paths: list[Path], where: Path, *, lines: list[int] | None = None) -> np.ndarray:
    """Read images that must all have the same size into ``(N, H, W)`` uint8.

    *lines*: the line of the CSV *where* that names each image, put before any error about it.
    """
    check_not_empty(len(paths), where)
    x = np.empty((0, 0, 0), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            image = read_png(path)
            if i == 0:
                x = np.empty((len(paths), *image.shape), dtype=np.uint8)
            elif image.shape != x.shape[1:]:
                raise DataError(
                    f"{path}: image is {hw(image.shape)} but {paths[0].name} is {hw(x.shape[1:])}; "
                    "all images must have the same size"
                )
        except DataError as exc:
            if lines is None:
                raise
            raise DataError(f"{where}, line {lines[i]}: {exc}") from exc
        x[i] = image
    return x


def read_png_folder(folder: Path) -> Images | None:
    """The PNGs of *folder*'s ``Images/test/``, else of *folder* itself, by name; None when it has none."""
    test_dir = folder / "Images" / "test"
    if test_dir.is_dir():
        pngs = _pngs_in(test_dir)
        return read_png_stack(pngs, test_dir), [p.name for p in pngs], FORMAT
    pngs = _pngs_in(folder)
    if not pngs:
        return None
    return read_png_stack(pngs, folder), [p.name for p in pngs], "png"


def _pngs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
