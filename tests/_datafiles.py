"""Small data files in every format digitune reads, written for a test under its tmp_path."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from digitune.models._data import Dataset

N_PER_CLASS = 6  # 60 training images: enough for stratified 20 % / 30 % splits
SIDE = 10


# --------------------------------------------------------------------------- writers


def make_images(n_per_class: int = N_PER_CLASS, side: int = SIDE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images with every class 0..9 appearing *n_per_class* times."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10), n_per_class)).astype(np.uint8)
    x = rng.integers(0, 256, size=(len(y), side, side), dtype=np.uint8)
    x[:, 0, 0] = 255  # make sure the full range is used
    x[:, 0, 1] = 0
    return x, y


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None, extra: bytes = b"", cut: int = 0) -> Path:
    """Write *array* as an IDX file (gzipped if the name ends in .gz)."""
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes() + extra
    if cut:
        data = data[:-cut]
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def idx_name(prefix: str, kind: str, *, gz: bool = True, dotted: bool = False) -> str:
    ndim = "idx3" if kind == "images" else "idx1"
    sep = "." if dotted else "-"
    return f"{prefix}-{kind}{sep}{ndim}-ubyte" + (".gz" if gz else "")


def make_idx_dir(folder: Path, *, test: bool = True, gz: bool = True, dotted: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_images()
    write_idx(folder / idx_name("train", "images", gz=gz, dotted=dotted), x)
    write_idx(folder / idx_name("train", "labels", gz=gz, dotted=dotted), y)
    if test:
        xt, yt = make_images(n_per_class=3, seed=1)
        write_idx(folder / idx_name("t10k", "images", gz=gz, dotted=dotted), xt)
        write_idx(folder / idx_name("t10k", "labels", gz=gz, dotted=dotted), yt)
    return folder


def make_npz(path: Path, *, test: bool = True, **overrides: np.ndarray) -> Path:
    x, y = make_images()
    arrays = {"x_train": x, "y_train": y}
    if test:
        arrays["x_test"], arrays["y_test"] = make_images(n_per_class=3, seed=1)
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def save_png(path: Path, pixels: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels, mode="L")
    if mode != "L":
        image = image.convert(mode)
    image.save(path)


def make_identify(root: Path, *, side: int = SIDE, test: bool = True) -> Path:
    """The "Identify the Digits" layout: train.csv + Images/train/*.png (+ test)."""
    x, y = make_images(side=side)
    modes = ["L", "RGB", "RGBA"]
    rows = ["filename,label"]
    for i, (pixels, label) in enumerate(zip(x, y)):
        save_png(root / "Images" / "train" / f"{i}.png", pixels, modes[i % 3])
        rows.append(f"{i}.png,{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    if test:
        xt, _ = make_images(n_per_class=1, side=side, seed=2)
        names = [f"{100 + i}.png" for i in range(len(xt))][::-1]  # deliberately not sorted
        for name, pixels in zip(names, xt[::-1]):
            save_png(root / "Images" / "test" / name, pixels, "RGBA")
        (root / "test.csv").write_text("filename\n" + "\n".join(names) + "\n")
    return root


def write_kaggle_csv(path: Path, x: np.ndarray, y: np.ndarray | None = None, *, first_pixel: int = 0) -> Path:
    flat = x.reshape(len(x), -1).astype(int)
    header = [f"pixel{first_pixel + i}" for i in range(flat.shape[1])]
    if y is not None:
        header = ["label", *header]
        flat = np.column_stack([y, flat])
    lines = [",".join(header)] + [",".join(map(str, row)) for row in flat]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def make_kaggle_dir(root: Path) -> Path:
    x, y = make_images()
    write_kaggle_csv(root / "train.csv", x, y)
    xt, _ = make_images(n_per_class=2, seed=3)
    write_kaggle_csv(root / "test.csv", xt)
    return root


# --------------------------------------------------------------------------- shared checks


def check_dataset(ds: Dataset, *, pool: int, n_test: int, shape: tuple[int, int], test_from: str) -> None:
    """Shapes, dtypes, ranges, labels and 70/30 counts of a loaded data set."""
    n_val = math.ceil(0.3 * pool)
    assert (ds.info.n_train, ds.info.n_val, ds.info.n_test) == (pool - n_val, n_val, n_test)
    for x, y, n in ((ds.x_train, ds.y_train, pool - n_val), (ds.x_val, ds.y_val, n_val), (ds.x_test, ds.y_test, n_test)):
        assert x.shape == (n, *shape)
        assert x.dtype == np.float32
        assert y.shape == (n,)
        assert y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert set(np.unique(y)) <= set(range(10))
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert ds.info.image_shape == shape
    assert ds.info.num_classes == 10
    assert ds.info.test_from == test_from
    assert len(ds.info.fingerprint) >= 16 and int(ds.info.fingerprint, 16) >= 0


def raw_rows(ds: Dataset) -> set[bytes]:
    """The train + validation images back as uint8 byte strings."""
    x = np.concatenate([ds.x_train, ds.x_val])
    return {row.tobytes() for row in (x * 255).round().astype(np.uint8)}


# --------------------------------------------------------------------------- digits (default)
