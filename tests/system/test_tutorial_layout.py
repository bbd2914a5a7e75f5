"""The Keras tutorial's own "Identify the Digits" data folder, as a data set and as images to predict.

The layout (the tutorial's STEP 1): ``Train/train.csv`` (filename,label), ``Test.csv`` (filename),
the images in ``Train/Images/train/`` and ``Train/Images/test/``, and a ``Sample_Submission.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_study
from digitune.models import DataError, load_dataset, read_images
from _datafiles import check_dataset, make_images, save_png

SIDE = 28
N_TRAIN = 60  # 6 per class


def make_tutorial(data: Path) -> Path:
    """The tutorial's data folder with 60 labelled 28x28 PNGs and 10 to predict (named out of order)."""
    x, y = make_images(side=SIDE)
    images = data / "Train" / "Images"
    modes = ["L", "RGB", "RGBA"]
    for i, pixels in enumerate(x):
        save_png(images / "train" / f"{i}.png", pixels, modes[i % 3])
    lines = ["filename,label", *(f"{i}.png,{label}" for i, label in enumerate(y))]
    (data / "Train" / "train.csv").write_text("\n".join(lines) + "\n")
    xt, _ = make_images(n_per_class=1, side=SIDE, seed=2)
    names = [f"{N_TRAIN + i}.png" for i in range(len(xt))][::-1]  # the tutorial numbers test after train
    for name, pixels in zip(names, xt):
        save_png(images / "test" / name, pixels)
    (data / "Test.csv").write_text("filename\n" + "\n".join(names) + "\n")
    (data / "Sample_Submission.csv").write_text("filename,label\n" + "".join(f"{n},0\n" for n in names))
    return data


def predict_names() -> list[str]:
    """Test.csv's file names, in its order."""
    return [f"{N_TRAIN + i}.png" for i in range(10)][::-1]


def _labels_by_image() -> dict[bytes, int]:
    x, y = make_images(side=SIDE)
    return {pixels.tobytes(): int(label) for pixels, label in zip(x, y)}


def _as_bytes(x: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in (x * 255).round().astype(np.uint8)]


@pytest.mark.parametrize("given", ["data", "data/Train"])
def test_the_train_csv_images_load_with_their_labels(tmp_path: Path, given: str) -> None:
    data = make_tutorial(tmp_path / "data")
    ds = load_dataset(tmp_path / given)
    check_dataset(ds, pool=48, n_test=12, shape=(SIDE, SIDE), test_from="held-out")  # 20 % held out, then 70/30
    assert (ds.info.format, ds.info.name, ds.info.source) == ("identify-the-digits", "data", str(data))
    truth = _labels_by_image()
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert [truth[b] for b in _as_bytes(x)] == y.tolist()  # every image with its own label
    seen = _as_bytes(ds.x_train) + _as_bytes(ds.x_val) + _as_bytes(ds.x_test)
    assert sorted(seen) == sorted(truth)  # all 60 train images, none of Test.csv's


def test_the_folder_and_its_train_folder_are_the_same_data(tmp_path: Path) -> None:
    data = make_tutorial(tmp_path / "data")
    assert load_dataset(data).info == load_dataset(data / "Train").info


@pytest.mark.parametrize("given", ["data", "data/Train", "data/Test.csv"])
def test_read_images_gives_test_csv_images_in_its_order(tmp_path: Path, given: str) -> None:
    make_tutorial(tmp_path / "data")
    x, ids, fmt = read_images(tmp_path / given)
    assert (ids, fmt, x.shape, x.dtype) == (predict_names(), "identify-the-digits", (10, SIDE, SIDE), np.float32)
    xt, _ = make_images(n_per_class=1, side=SIDE, seed=2)
    np.testing.assert_allclose(x, xt / 255.0, atol=1e-7)


def _unlink(path: Path) -> None:
    path.unlink()


def _rewrite_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


BROKEN = {
    # case: (break the folder, read it with, the error)
    "missing-train-image": (lambda d: _unlink(d / "Train/Images/train/4.png"), load_dataset,
                            r"Train/train\.csv, line 6: \S+/Train/Images/train/4\.png: image file not found; "
                            r"check the file names"),
    "label-12": (lambda d: _rewrite_line(d / "Train/train.csv", 3, "1.png,12"), load_dataset,
                 r"Train/train\.csv, line 3: labels must be 0\.\.9, found label 12; fix or drop that row"),
    "bad-header": (lambda d: _rewrite_line(d / "Train/train.csv", 1, "file,digit"), load_dataset,
                   r"Train/train\.csv: no 'filename' or 'label' column \(columns: file,digit\); this CSV needs "
                   r"the header line 'filename,label'"),
    "no-train-images": (lambda d: [_unlink(p) for p in (d / "Train/Images/train").iterdir()]
                        and (d / "Train/Images/train").rmdir(), load_dataset,
                        r"Train/Images/train: folder not found; an Identify-the-Digits data set needs train\.csv"),
    "unreadable-test-image": (lambda d: (d / "Train/Images/test/65.png").write_bytes(b"no png"), read_images,
                              r"data/Test\.csv, line 6: \S+/Train/Images/test/65\.png: unreadable image"),
    "no-test-csv": (lambda d: _unlink(d / "Test.csv"), read_images,
                    r"data: no Test\.csv; in the tutorial's layout Test\.csv \(column filename\) names the images"),
    "test-csv-header": (lambda d: _rewrite_line(d / "Test.csv", 1, "id"), read_images,
                        r"Test\.csv: no 'filename' column \(columns: id\)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_layout_names_the_file_and_line(tmp_path: Path, case: str) -> None:
    data = make_tutorial(tmp_path / "data")
    breaks, reader, message = BROKEN[case]
    breaks(data)
    with pytest.raises(DataError, match=message):
        reader(data)


def test_run_and_predict_write_the_tutorials_submission(tmp_path: Path) -> None:
    data = make_tutorial(tmp_path / "data")
    study = write_study(tmp_path, "tutorial", trials=1, family='"mlp"', pruner="none")
    study.write_text(study.read_text().replace("epochs = {low = 1, high = 3}", "epochs = 1"))
    db = f"sqlite:///{tmp_path / 'studies.db'}"

    ran = run_cli("run", str(study), "--dataset", str(data), "--storage", db, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    predicted = run_cli("predict", "tutorial", "--data", str(data), "-o", "sub.csv", "--storage", db, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert "wrote 10 predictions to sub.csv (filename,label)" in predicted.stdout

    with (tmp_path / "sub.csv").open(newline="") as handle:
        table = list(csv.reader(handle))
    with (data / "Sample_Submission.csv").open(newline="") as handle:
        assert table[0] == next(csv.reader(handle))  # the tutorial's submission header
    assert [name for name, _ in table[1:]] == predict_names()  # Test.csv's order
    assert all(label in set("0123456789") for _, label in table[1:])

    (data / "Train/Images/train/4.png").unlink()
    other = write_study(tmp_path, "other", trials=1, family='"mlp"', pruner="none")
    broken = run_cli("run", str(other), "--dataset", str(data), "--storage", db, cwd=tmp_path)
    assert broken.returncode == 2
    assert broken.stderr.startswith("error: ") and broken.stderr.count("\n") == 1, broken.stderr
    assert "train.csv, line 6:" in broken.stderr and "4.png: image file not found" in broken.stderr
