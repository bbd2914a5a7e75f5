"""Tests for models/_data.py: every source format, the splits, and bad-data errors.

Each test writes its own small data files under ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tracemalloc
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitune.models._data import DataError, DatasetInfo, load_dataset, read_images

from _datafiles import (SIDE, check_dataset, make_identify, make_idx_dir, make_images,  # noqa: F401
                        make_kaggle_dir, make_npz, raw_rows, save_png, write_idx, write_kaggle_csv)
from conftest import REPO


def test_digits_default() -> None:
    ds = load_dataset()
    check_dataset(ds, pool=1797 - 360, n_test=360, shape=(8, 8), test_from="held-out")
    assert ds.info.name == "digits"
    assert ds.info.source == "sklearn.datasets.load_digits"
    assert ds.info.format == "sklearn"
    assert ds.x_train.max() == 1.0  # 16 / 16
    assert np.allclose(ds.x_train * 16, np.round(ds.x_train * 16))


def test_digits_test_set_fixed_and_val_split_follows_seed() -> None:
    a = load_dataset("digits", seed=1)
    b = load_dataset("digits", seed=2)
    c = load_dataset("digits", seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.x_val, c.x_val)
    np.testing.assert_array_equal(a.y_train, c.y_train)


def test_digits_splits_are_stratified() -> None:
    ds = load_dataset()
    total = np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test]), minlength=10)
    for y, n in ((ds.y_train, ds.info.n_train), (ds.y_val, ds.info.n_val), (ds.y_test, ds.info.n_test)):
        expected = total * n / total.sum()
        assert np.all(np.abs(np.bincount(y, minlength=10) - expected) <= 1.5)


def test_validation_split_fraction() -> None:
    ds = load_dataset(validation_split=0.2)
    assert ds.info.n_val == math.ceil(0.2 * 1437)
    assert ds.info.n_train + ds.info.n_val == 1437


def test_center_subtracts_train_mean() -> None:
    plain = load_dataset()
    centred = load_dataset(center=True)
    assert np.abs(centred.x_train.mean(axis=0)).max() < 1e-5
    mean = plain.x_train.mean(axis=0)
    np.testing.assert_allclose(centred.x_val, plain.x_val - mean, atol=1e-6)
    np.testing.assert_allclose(centred.x_test, plain.x_test - mean, atol=1e-6)
    assert centred.x_train.dtype == np.float32


def test_limit_subsamples_training_pool_only() -> None:
    full = load_dataset()
    ds = load_dataset(limit=200)
    assert ds.info.n_train + ds.info.n_val == 200
    assert ds.info.n_val == 60
    assert ds.info.n_test == full.info.n_test
    np.testing.assert_array_equal(ds.x_test, full.x_test)
    assert np.all(np.bincount(np.concatenate([ds.y_train, ds.y_val]), minlength=10) >= 19)


def test_limit_at_minimum_and_above_pool_size() -> None:
    tiny = load_dataset(limit=20)  # validation part (6) is smaller than the class count: unstratified fallback
    assert (tiny.info.n_train, tiny.info.n_val) == (14, 6)
    ds = load_dataset(limit=10_000)
    assert ds.info.n_train + ds.info.n_val == 1437


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"validation_split": 0.0}, "validation_split must be between 0 and 1"),
        ({"validation_split": 1.0}, "validation_split must be between 0 and 1"),
        ({"validation_split": -0.3}, "validation_split must be between 0 and 1"),
        ({"limit": 19}, "limit must be an integer of at least 20"),
        ({"limit": 0}, "limit must be an integer of at least 20"),
        ({"limit": 25.5}, "limit must be an integer of at least 20"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset("digits", **kwargs)


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_fingerprint_ignores_split_options() -> None:
    base = load_dataset().info.fingerprint
    for kwargs in ({"seed": 7}, {"validation_split": 0.1}, {"limit": 100}, {"center": True}):
        assert load_dataset(**kwargs).info.fingerprint == base


def test_fingerprint_depends_on_data(tmp_path: Path) -> None:
    a = load_dataset(make_npz(tmp_path / "a.npz")).info.fingerprint
    x, _ = make_images(seed=9)
    b = load_dataset(make_npz(tmp_path / "b.npz", x_train=x)).info.fingerprint
    assert a != b
    assert load_dataset(make_npz(tmp_path / "c.npz"), seed=3, limit=30).info.fingerprint == a


def test_info_to_dict_is_json_friendly() -> None:
    info = load_dataset().info
    data = info.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["image_shape"] == [8, 8]
    assert set(data) == {
        "name", "source", "format", "image_shape", "num_classes", "fingerprint",
        "n_train", "n_val", "n_test", "test_from",
    }
    assert DatasetInfo(**{**data, "image_shape": (8, 8)}) == info


def test_module_does_not_import_keras_or_sklearn() -> None:
    # commands that only read a study database import this module: keep them quick
    # bare packages stand in for digitune/ and models/ so that their __init__ (which may import more) does not run
    code = (
        "import importlib, sys, types\n"
        "root = types.ModuleType('digitune')\n"
        f"root.__path__ = [{str(REPO / 'digitune')!r}]\n"
        "package = types.ModuleType('digitune.models')\n"
        f"package.__path__ = [{str(REPO / 'models')!r}]\n"
        "sys.modules['digitune'], sys.modules['digitune.models'] = root, package\n"
        "importlib.import_module('digitune.models._data')\n"
        "bad = [m for m in ('keras', 'tensorflow', 'sklearn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- IDX folders


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dash", "dot"])
def test_idx_folder(tmp_path: Path, gz: bool, dotted: bool) -> None:
    folder = make_idx_dir(tmp_path / "my-idx", gz=gz, dotted=dotted)
    ds = load_dataset(folder)
    check_dataset(ds, pool=60, n_test=30, shape=(SIDE, SIDE), test_from="source")
    assert ds.info.format == "idx"
    assert ds.info.name == "my-idx"
    assert ds.info.source == str(folder.resolve())
    xt, yt = make_images(n_per_class=3, seed=1)
    np.testing.assert_array_equal(ds.y_test, yt)
    np.testing.assert_allclose(ds.x_test, xt / 255.0, atol=1e-7)
    x, _ = make_images()
    assert raw_rows(ds) <= {row.tobytes() for row in x}


def test_idx_folder_without_t10k_holds_out_test(tmp_path: Path) -> None:
    ds = load_dataset(str(make_idx_dir(tmp_path / "idx", test=False)))
    check_dataset(ds, pool=48, n_test=12, shape=(SIDE, SIDE), test_from="held-out")
    assert np.all(np.bincount(ds.y_test, minlength=10) >= 1)


def test_idx_and_npz_of_same_arrays_share_fingerprint(tmp_path: Path) -> None:
    idx = load_dataset(make_idx_dir(tmp_path / "idx")).info.fingerprint
    npz = load_dataset(make_npz(tmp_path / "same.npz")).info.fingerprint
    assert idx == npz


def test_fashion_mnist_with_folder(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "fm")
    ds = load_dataset(f"fashion-mnist:{folder}")
    assert ds.info.name == "fashion-mnist"
    assert ds.info.format == "idx"
    assert ds.info.source == str(folder)
    check_dataset(ds, pool=60, n_test=30, shape=(SIDE, SIDE), test_from="source")


def test_fashion_mnist_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"nope: Fashion-MNIST folder not found; install it with `apt-get install dataset-fashion-mnist`"):
        load_dataset(f"fashion-mnist:{tmp_path / 'nope'}")
    monkeypatch.setattr("digitune.models._data.FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match=r"absent: .*apt-get install dataset-fashion-mnist.*fashion-mnist:/path/to/folder"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_needs_t10k(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "fm", test=False)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset(f"fashion-mnist:{folder}")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist absent)",
)
def test_fashion_mnist_system_package() -> None:
    ds = load_dataset("fashion-mnist")
    check_dataset(ds, pool=60_000, n_test=10_000, shape=(28, 28), test_from="source")
    assert ds.info.source == "/usr/share/datasets/fashion-mnist"
    x, ids, fmt = read_images("/usr/share/datasets/fashion-mnist")
    assert (x.shape, ids, fmt) == ((10_000, 28, 28), None, "idx")
    np.testing.assert_array_equal(x, ds.x_test)


def _idx_with(tmp_path: Path, name: str, **kwargs) -> Path:
    """An IDX folder whose file *name* is rewritten with write_idx(**kwargs)."""
    folder = make_idx_dir(tmp_path / "idx")
    array = kwargs.pop("array", None)
    if array is None:
        x, y = make_images() if name.startswith("train") else make_images(n_per_class=3, seed=1)
        array = x if "images" in name else y
    write_idx(folder / name, array, **kwargs)
    return folder


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        (
            "train-images-idx3-ubyte.gz",
            {"magic": 1234},
            r"train-images-idx3-ubyte\.gz: wrong IDX magic number 1234 \(expected 2051 for an image file\); "
            r"is this an MNIST-style IDX file\?",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            {"magic": 2051},
            r"t10k-labels-idx1-ubyte\.gz: wrong IDX magic number 2051 \(expected 2049 for a label file\)",
        ),
        (
            "train-images-idx3-ubyte.gz",
            {"cut": 7},
            r"train-images-idx3-ubyte\.gz: truncated IDX file: header says 60x10x10 \(6000 bytes of data\) "
            r"but the file has 5993",
        ),
        ("train-labels-idx1-ubyte.gz", {"cut": 1}, r"train-labels-idx1-ubyte\.gz: truncated IDX file"),
        ("train-labels-idx1-ubyte.gz", {"extra": b"xx"}, r"train-labels-idx1-ubyte\.gz: IDX file has trailing bytes"),
        (
            "train-labels-idx1-ubyte.gz",
            {"array": np.zeros(59, dtype=np.uint8)},
            r"train-images-idx3-ubyte\.gz: has 60 images but train-labels-idx1-ubyte\.gz has 59 labels",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            {"array": np.array([0, 1, 12, 3] * 7 + [15, 0], dtype=np.uint8)},
            r"t10k-labels-idx1-ubyte\.gz: labels must be 0\.\.9, found labels 12, 15",
        ),
    ],
    ids=["image-magic", "label-magic", "truncated-images", "truncated-labels", "trailing", "count-mismatch", "bad-labels"],
)
def test_idx_bad_files(tmp_path: Path, name: str, kwargs: dict, match: str) -> None:
    folder = _idx_with(tmp_path, name, **kwargs)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(folder)
    assert str(folder.resolve() / "x")[:-1] in str(info.value)  # the full path is named


def test_idx_single_bad_label_message(tmp_path: Path) -> None:
    y = make_images()[1].copy()
    y[5] = 12
    folder = _idx_with(tmp_path, "train-labels-idx1-ubyte.gz", array=y)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: labels must be 0\.\.9, found label 12;"):
        load_dataset(folder)


def test_idx_empty(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((0, 10, 10), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(0, dtype=np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: contains no images \(0 images\)"):
        load_dataset(folder)


def test_idx_header_too_short(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "idx")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(DataError, match=r"truncated IDX file: 3 bytes, shorter than the 16-byte header"):
        load_dataset(folder)


@pytest.mark.parametrize(
    "content",
    [b"\x1f\x8b" + b"not really gzip" * 4,  # a whole IDX file's gzip stream, cut short
     gzip.compress(struct.pack(">4I", 2051, 60, 10, 10) + bytes(range(200)) * 30)[:-12]],
    ids=["garbage", "cut-stream"],
)
def test_idx_corrupt_gzip(tmp_path: Path, content: bytes) -> None:
    folder = make_idx_dir(tmp_path / "idx")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(content)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt or unreadable gzip file .*download it again"):
        load_dataset(folder)


@pytest.mark.parametrize(
    ("remove", "match"),
    [
        ("train-labels-idx1-ubyte.gz", r"train-labels IDX file not found \(looked for train-labels-idx1-ubyte\.gz"),
        ("train-images-idx3-ubyte.gz", r"train-images IDX file not found"),
        ("t10k-labels-idx1-ubyte.gz", r"t10k-labels IDX file not found"),
    ],
)
def test_idx_missing_partner_file(tmp_path: Path, remove: str, match: str) -> None:
    folder = make_idx_dir(tmp_path / "idx")
    (folder / remove).unlink()
    with pytest.raises(DataError, match=match):
        load_dataset(folder)


def test_idx_train_test_size_mismatch(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "idx")
    write_idx(folder / "t10k-images-idx3-ubyte.gz", make_images(n_per_class=3, side=8)[0])
    with pytest.raises(DataError, match=r"images are 10x10 but .*t10k-images-idx3-ubyte\.gz has 8x8 images"):
        load_dataset(folder)


def gzip_bomb(path: Path, header: bytes, inflated: int) -> Path:
    """A gzip file of *header* and then zeros, *inflated* bytes in all, a few hundred KB on disk."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
    chunk = bytes(1 << 20)
    parts = [packer.compress(header)] + [packer.compress(chunk) for _ in range(inflated >> 20)]
    path.write_bytes(b"".join(parts) + packer.flush())
    return path


def test_idx_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "idx")
    gzip_bomb(folder / "train-images-idx3-ubyte.gz", struct.pack(">4I", 2051, 60, 10, 10), 64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: IDX file has trailing bytes: header says "
                                             r"60x10x10 \(6000 bytes of data\) but the file has more"):
            load_dataset(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"reading a 64 MB gzip bomb took {peak} bytes"


def test_idx_header_declaring_more_than_the_cap_is_refused(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "idx")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(struct.pack(">4I", 2051, 200000, 100, 100)))
    with pytest.raises(DataError, match=r"IDX header says 200000x100x100 \(2000000000 bytes of data\), more than "
                                         r"the 1073741824 bytes read from a gzip file; gunzip it"):
        load_dataset(folder)


@pytest.mark.parametrize("reader", [load_dataset, read_images], ids=["load_dataset", "read_images"])
def test_a_named_pipe_is_refused_not_read(tmp_path: Path, reader) -> None:
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    with pytest.raises(DataError, match=r"data\.npz: not a regular file or folder \(a named pipe"):
        reader(fifo)


def test_a_named_pipe_among_the_images_is_refused(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "id", test=False)
    (root / "Images" / "train" / "3.png").unlink()
    os.mkfifo(root / "Images" / "train" / "3.png")
    with pytest.raises(DataError, match=r"3\.png: not a regular file"):
        load_dataset(root)


def test_compressed_npz_inflating_past_the_cap_is_refused(tmp_path: Path, monkeypatch) -> None:
    import digitune.models._formats

    x, y = make_images()
    np.savez_compressed(tmp_path / "z.npz", x_train=x, y_train=y)
    monkeypatch.setattr(digitune.models._formats, "MAX_INFLATED_BYTES", 5000)  # the arrays hold 6000 + 60 bytes
    with pytest.raises(DataError, match=r"z\.npz: its compressed arrays inflate to \d+ bytes, more than the 5000"):
        load_dataset(tmp_path / "z.npz")
    np.savez(tmp_path / "plain.npz", x_train=x, y_train=y)  # uncompressed: its size is on disk already
    assert load_dataset(tmp_path / "plain.npz").info.n_train > 0


@pytest.mark.parametrize("side", [10, 20], ids=["warned", "refused"])
def test_png_past_pillows_pixel_limit_is_refused(tmp_path: Path, monkeypatch, side: int) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow warns past it and refuses past twice it
    save_png(tmp_path / "big.png", np.zeros((side, side), np.uint8))
    with pytest.raises(DataError, match=r"big\.png: unreadable image \(Image size"):
        read_images(tmp_path / "big.png")


# --------------------------------------------------------------------------- npz and mnist


@pytest.mark.parametrize("variant", ["uint8", "channel", "float"])
def test_npz(tmp_path: Path, variant: str) -> None:
    x, y = make_images()
    xt, yt = make_images(n_per_class=3, seed=1)
    if variant == "channel":
        x, xt = x[..., None], xt[..., None]
    elif variant == "float":
        x, xt = x.astype(np.float32) / 255, xt.astype(np.float32) / 255
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt.astype(np.int64))
    ds = load_dataset(path)
    check_dataset(ds, pool=60, n_test=30, shape=(SIDE, SIDE), test_from="source")
    assert (ds.info.format, ds.info.name, ds.info.source) == ("npz", "data.npz", str(path))
    np.testing.assert_allclose(ds.x_test, make_images(n_per_class=3, seed=1)[0] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(ds.y_test, yt)


def test_npz_without_test_arrays(tmp_path: Path) -> None:
    ds = load_dataset(make_npz(tmp_path / "train-only.npz", test=False))
    check_dataset(ds, pool=48, n_test=12, shape=(SIDE, SIDE), test_from="held-out")


def test_path_with_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    make_npz(tmp_path / "home.npz")
    ds = load_dataset("~/home.npz")
    assert ds.info.source == str(tmp_path.resolve() / "home.npz")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"x_train": np.zeros((60, 100), np.uint8)}, r"x_train has shape \(60, 100\); expected \(N, H, W\) or \(N, H, W, 1\)"),
        ({"x_test": np.zeros((30, 10, 10, 3), np.uint8)}, r"x_test has shape \(30, 10, 10, 3\)"),
        ({"y_train": np.zeros((60, 2), np.uint8)}, r"y_train has shape \(60, 2\)"),
        ({"y_train": np.zeros(59, np.uint8)}, r"y_train has 59 labels but there are 60 images"),
        ({"y_test": np.full(30, 12)}, r"y_test: labels must be 0\.\.9, found label 12"),
        ({"y_train": np.full(60, 0.5)}, r"y_train has non-integer labels"),
        ({"x_train": np.zeros((0, 10, 10), np.uint8), "y_train": np.zeros(0, np.uint8)}, r"x_train: contains no images \(0 images\)"),
        ({"x_test": np.zeros((30, 8, 8), np.uint8)}, r"x_train: images are 10x10 but x_test has 8x8 images"),
        ({"x_train": np.full((60, 10, 10), 300.0)}, r"x_train: pixel values must be 0\.\.255 .*found 300\.0\.\.300\.0"),
        ({"x_test": np.full((30, 10, 10), 0.5)}, r"x_train and x_test use different pixel scales"),
        ({"x_train": np.full((60, 10, 10), "a")}, r"x_train has dtype <U1"),
    ],
    ids=["ndim", "channels", "label-ndim", "count", "label-12", "float-labels", "empty", "sizes", "range", "scales", "dtype"],
)
def test_npz_bad_arrays(tmp_path: Path, overrides: dict, match: str) -> None:
    path = make_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_npz_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    x, y = make_images()
    np.savez(path, x_train=x, y_train=y, x_test=x)
    with pytest.raises(DataError, match=r"partial\.npz: missing array\(s\) y_test \(found: x_test, x_train, y_train\)"):
        load_dataset(path)
    np.savez(path, images=x)
    with pytest.raises(DataError, match=r"missing array\(s\) x_train, y_train"):
        load_dataset(path)


def test_npz_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz file"):
        load_dataset(path)


def test_mnist_from_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    cache = make_npz(tmp_path / "keras" / "datasets" / "mnist.npz")
    ds = load_dataset("mnist", download=False)
    check_dataset(ds, pool=60, n_test=30, shape=(SIDE, SIDE), test_from="source")
    assert (ds.info.name, ds.info.format, ds.info.source) == ("mnist", "npz", str(cache))


def test_mnist_missing_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cache = tmp_path / "datasets" / "mnist.npz"
    with pytest.raises(DataError, match=r"download mnist\.npz on a machine with internet access") as info:
        load_dataset("mnist", download=False)
    assert f"place it at {cache}" in str(info.value)


def _fake_keras(monkeypatch: pytest.MonkeyPatch, load_data) -> None:
    """Install a stand-in ``keras`` module so no real download is attempted."""
    fake = types.ModuleType("keras")
    fake.datasets = types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=load_data))
    monkeypatch.setitem(sys.modules, "keras", fake)


def test_mnist_download_failure_becomes_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline():
        raise OSError("network is unreachable")

    _fake_keras(monkeypatch, offline)
    with pytest.raises(DataError, match=r"could not download MNIST \(network is unreachable\); download mnist\.npz") as info:
        load_dataset("mnist")
    assert isinstance(info.value.__cause__, OSError)
    assert str(tmp_path / "datasets" / "mnist.npz") in str(info.value)


def test_mnist_download_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    x, y = make_images()
    xt, yt = make_images(n_per_class=3, seed=1)
    _fake_keras(monkeypatch, lambda: ((x, y), (xt, yt)))
    ds = load_dataset("mnist")
    check_dataset(ds, pool=60, n_test=30, shape=(SIDE, SIDE), test_from="source")
    assert ds.info.name == "mnist"
    assert ds.info.source == "keras.datasets.mnist.load_data"


# --------------------------------------------------------------------------- Identify the Digits


def test_identify_the_digits(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "identify")
    ds = load_dataset(root)
    check_dataset(ds, pool=48, n_test=12, shape=(SIDE, SIDE), test_from="held-out")
    assert (ds.info.format, ds.info.name, ds.info.source) == ("identify-the-digits", "identify", str(root))
    x, _ = make_images()
    # L, RGB and RGBA files all come back as the original gray values
    all_rows = raw_rows(ds) | {r.tobytes() for r in (ds.x_test * 255).round().astype(np.uint8)}
    assert all_rows == {row.tobytes() for row in x}


def test_identify_train_csv_path(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "identify", test=False)
    info = load_dataset(root / "train.csv").info
    assert (info.format, info.name, info.source) == ("identify-the-digits", "identify", str(root))


def test_identify_28x28(tmp_path: Path) -> None:
    ds = load_dataset(make_identify(tmp_path / "big", side=28, test=False))
    assert ds.info.image_shape == (28, 28)


def test_identify_mixed_sizes(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "identify")
    save_png(root / "Images" / "train" / "7.png", np.zeros((12, 11), np.uint8))
    with pytest.raises(DataError, match=r"Images/train/7\.png: image is 12x11 but 0\.png is 10x10; all images must have the same size"):
        load_dataset(root)


def test_identify_unreadable_png(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "identify")
    (root / "Images" / "train" / "3.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"Images/train/3\.png: unreadable image"):
        load_dataset(root)


def test_identify_missing_png(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "identify")
    (root / "Images" / "train" / "4.png").unlink()
    with pytest.raises(DataError, match=r"Images/train/4\.png: image file not found"):
        load_dataset(root)


def test_identify_missing_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "identify"
    root.mkdir()
    (root / "train.csv").write_text("filename,label\n0.png,1\n")
    with pytest.raises(DataError, match=r"Images/train: folder not found"):
        load_dataset(root)


@pytest.mark.parametrize(
    ("csv_text", "match"),
    [
        ("filename\n0.png\n", r"train\.csv: no 'label' column \(columns: filename\)"),
        ("filename,label\n", r"train\.csv: contains no images \(0 images\)"),
        ("filename,label\n0.png,12\n1.png,3\n", r"train\.csv, line 2: labels must be 0\.\.9, found label 12"),
        ("filename,label\n0.png,seven\n", r"train\.csv, line 2: label 'seven' is not an integer"),
        ("filename,label\n0.png,1\n,2\n", r"train\.csv, line 3: empty filename"),
    ],
    ids=["no-label", "empty", "label-12", "not-int", "no-filename"],
)
def test_identify_bad_csv(tmp_path: Path, csv_text: str, match: str) -> None:
    root = make_identify(tmp_path / "identify")
    (root / "train.csv").write_text(csv_text)
    with pytest.raises(DataError, match=match):
        load_dataset(root)


# --------------------------------------------------------------------------- Kaggle CSV


def test_kaggle_csv_file_and_folder(tmp_path: Path) -> None:
    root = make_kaggle_dir(tmp_path / "kaggle")
    for source in (root, root / "train.csv"):
        ds = load_dataset(source)
        check_dataset(ds, pool=48, n_test=12, shape=(SIDE, SIDE), test_from="held-out")
        assert ds.info.format == "kaggle-csv"
    assert ds.info.source == str(root / "train.csv")
    x, _ = make_images()
    assert raw_rows(ds) <= {row.tobytes() for row in x}


def test_kaggle_csv_28x28_pixel1_numbering(tmp_path: Path) -> None:
    x, y = make_images(side=28)
    ds = load_dataset(write_kaggle_csv(tmp_path / "fashion_train.csv", x, y, first_pixel=1))
    assert ds.info.image_shape == (28, 28)
    assert ds.info.name == "fashion_train.csv"


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ("pixel0,pixel1,pixel2,pixel3", ["1,2,3,4"], r"test\.csv: no 'label' column .*pass train\.csv instead"),
        ("label," + ",".join(f"pixel{i}" for i in range(99)), ["1" + ",0" * 99], r"99 pixel columns is not a perfect square"),
        ("label,pixel0,pixel1,pixel2,pixel3", [], r"contains no images \(0 images\)"),
        ("label,pixel0,pixel1,pixel2,pixel3", ["12,0,0,0,0", "1,0,0,0,0"], r"labels must be 0\.\.9, found label 12"),
        ("label,pixel0,pixel1,pixel2,pixel3", ["1,0,0,0,0", "2,0,0"], r"malformed CSV \(the number of columns changed"),
        ("label,pixel0,pixel1,pixel2,pixel3", ["1,0,0,x,0"], r"malformed CSV"),
        ("label,pixel0,pixel1,pixel2,pixel3", ["1,0,0,256,0"], r"pixel values must be 0\.\.255, found 0\.\.256"),
        ("label,pixel0,pixel1,pixel2,pixel3,note", ["1,0,0,0,0,3"], r"unexpected column\(s\) note"),
        ("a,b,c", ["1,2,3"], r"unrecognised CSV header"),
        ("", [], r"empty CSV file \(no header line\)"),
    ],
    ids=["no-label", "not-square", "empty", "label-12", "ragged", "not-number", "pixel-range", "extra-column", "unknown", "empty-file"],
)
def test_kaggle_bad_csv(tmp_path: Path, header: str, rows: list[str], match: str) -> None:
    path = tmp_path / "test.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- unsupported sources


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does-not-exist: no such file or folder; accepted sources: 'digits'"):
        load_dataset(tmp_path / "does-not-exist")


@pytest.mark.parametrize("make", ["empty-dir", "txt-file"])
def test_unsupported_source(tmp_path: Path, make: str) -> None:
    if make == "empty-dir":
        path = tmp_path / "empty"
        path.mkdir()
    else:
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    with pytest.raises(DataError, match=r"unsupported dataset format; accepted sources: .*IDX.*\.npz.*Identify the Digits.*Kaggle"):
        load_dataset(path)


def test_too_few_examples_to_split(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, x_train=np.zeros((1, 4, 4), np.uint8), y_train=np.array([3]))
    with pytest.raises(DataError, match=r"too few examples \(1\) to split off a test set"):
        load_dataset(path)


# --------------------------------------------------------------------------- read_images


def test_read_images_identify_root(tmp_path: Path) -> None:
    root = make_identify(tmp_path / "identify")
    x, ids, fmt = read_images(root)
    names = (root / "test.csv").read_text().split()[1:]
    assert fmt == "identify-the-digits"
    assert ids == names  # order of test.csv
    assert x.shape == (10, SIDE, SIDE) and x.dtype == np.float32
    expected = np.asarray(Image.open(root / "Images" / "test" / names[0]).convert("L")) / 255.0
    np.testing.assert_allclose(x[0], expected, atol=1e-7)


def test_read_images_png_folder_and_file(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    xs, _ = make_images(n_per_class=1)
    for i, name in enumerate(["b.png", "a.png", "c.png"]):
        save_png(folder / name, xs[i], "RGBA")
    (folder / "readme.txt").write_text("ignored")
    x, ids, fmt = read_images(folder)
    assert (ids, fmt, x.shape, x.dtype) == (["a.png", "b.png", "c.png"], "png", (3, SIDE, SIDE), np.float32)
    np.testing.assert_allclose(x[0], xs[1] / 255.0, atol=1e-7)

    x, ids, fmt = read_images(str(folder / "c.png"))
    assert (ids, fmt, x.shape) == (["c.png"], "png", (1, SIDE, SIDE))
    np.testing.assert_allclose(x[0], xs[2] / 255.0, atol=1e-7)


def test_read_images_png_folder_mixed_sizes(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", np.zeros((10, 10), np.uint8))
    save_png(tmp_path / "b.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(DataError, match=r"b\.png: image is 28x28 but a\.png is 10x10"):
        read_images(tmp_path)


def test_read_images_kaggle(tmp_path: Path) -> None:
    root = make_kaggle_dir(tmp_path / "kaggle")
    xt, _ = make_images(n_per_class=2, seed=3)
    for path in (root, root / "test.csv"):
        x, ids, fmt = read_images(path)
        assert (ids, fmt, x.shape) == (None, "kaggle-csv", (20, SIDE, SIDE))
        np.testing.assert_allclose(x, xt / 255.0, atol=1e-7)
    x, ids, fmt = read_images(root / "train.csv")  # a label column is ignored
    assert (ids, fmt, x.shape) == (None, "kaggle-csv", (60, SIDE, SIDE))


def test_read_images_npz(tmp_path: Path) -> None:
    x, ids, fmt = read_images(make_npz(tmp_path / "d.npz"))
    assert (ids, fmt, x.shape, x.dtype) == (None, "npz", (30, SIDE, SIDE), np.float32)
    np.testing.assert_allclose(x, make_images(n_per_class=3, seed=1)[0] / 255.0, atol=1e-7)
    with pytest.raises(DataError, match=r"train\.npz: no x_test array"):
        read_images(make_npz(tmp_path / "train.npz", test=False))


def test_read_images_idx(tmp_path: Path) -> None:
    folder = make_idx_dir(tmp_path / "idx", gz=False)
    xt = make_images(n_per_class=3, seed=1)[0] / 255.0
    for path in (folder, folder / "t10k-images-idx3-ubyte"):
        x, ids, fmt = read_images(path)
        assert (ids, fmt, x.shape) == (None, "idx", (30, SIDE, SIDE))
        np.testing.assert_allclose(x, xt, atol=1e-7)
    with pytest.raises(DataError, match=r"no t10k-images-idx3-ubyte"):
        read_images(make_idx_dir(tmp_path / "train-only", test=False))


@pytest.mark.parametrize("make", ["missing", "empty-dir", "txt-file", "bad-png"])
def test_read_images_errors(tmp_path: Path, make: str) -> None:
    path = tmp_path / "thing"
    match = {
        "missing": r"thing: no such file or folder; accepted inputs",
        "empty-dir": r"thing: no images found; accepted inputs",
        "txt-file": r"thing\.txt: unsupported file for prediction",
        "bad-png": r"thing\.png: unreadable image",
    }[make]
    if make == "empty-dir":
        path.mkdir()
    elif make == "txt-file":
        path = path.with_suffix(".txt")
        path.write_text("x")
    elif make == "bad-png":
        path = path.with_suffix(".png")
        path.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=match):
        read_images(path)
