"""The Trial page's saved model: downloads, misclassified images, an uploaded digit."""

from __future__ import annotations

import io

import numpy as np
import optuna
import pytest
from PIL import Image

from conftest import REPO, write_study
from digitune.dashboard._model import (
    MAX_UPLOAD_BYTES,
    UploadError,
    load_saved_model,
    misclassified,
    predict_upload,
    submission_csv,
)
from digitune.search import ModelKeeper, artifact_dir, load_spec, open_storage, run_study

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(REPO / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def saved_study(tmp_path_factory, small_digits):
    folder = tmp_path_factory.mktemp("saved")
    url = f"sqlite:///{folder / 'saved.db'}"
    spec = load_spec(write_study(folder, "saved", trials=3, family='"mlp"', pruner="none"))
    storage = open_storage(url)
    run_study(spec, storage, dataset=small_digits, keeper=ModelKeeper(artifact_dir(url), spec.save_models))
    study = optuna.load_study(study_name="saved", storage=storage)
    return url, storage, study


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_saved_model_mistakes_upload_and_submission(saved_study):
    url, storage, study = saved_study
    number = int(next(iter(study.user_attrs["saved_models"])))
    saved = load_saved_model(url, storage, "saved", number)
    assert saved is not None and saved.keras_bytes[:2] == b"PK"  # a .keras file is a zip
    assert saved.dataset.info.fingerprint == study.user_attrs["dataset"]["fingerprint"]

    mistakes = misclassified(saved, limit=5)
    assert 0 < len(mistakes) <= 5
    assert all(m["true"] != m["predicted"] for m in mistakes)
    assert [m["probability"] for m in mistakes] == sorted((m["probability"] for m in mistakes), reverse=True)
    assert mistakes[0]["image"].dtype == np.uint8 and mistakes[0]["image"].shape == (80, 80)

    # A validation digit, drawn black on white at 64x64, comes back as probabilities over 10 classes.
    digit = saved.dataset.x_val[0]
    drawn = 255 - np.kron(digit * 255, np.ones((8, 8)))
    probabilities = predict_upload(saved, _png(drawn))
    assert probabilities.shape == (10,) and abs(probabilities.sum() - 1) < 1e-4

    rows = submission_csv(saved).splitlines()
    assert rows[0] == "ImageId,Label" and len(rows) == 1 + len(saved.dataset.y_test)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x89PNG" + b"0" * MAX_UPLOAD_BYTES, r"upload at most 1,048,576 bytes"),
    (b"not an image", r"not a readable PNG image"),
    (_png(np.zeros((8, 8)), "JPEG"), r"expected a PNG image, got JPEG"),
    (_png(np.zeros((1100, 20))), r"20x1100 pixels; upload at most 1024 pixels a side"),
])
def test_bad_uploads_are_refused_before_decoding(saved_study, data, message):
    url, storage, study = saved_study
    saved = load_saved_model(url, storage, "saved", int(next(iter(study.user_attrs["saved_models"]))))
    with pytest.raises(UploadError, match=message):
        predict_upload(saved, data)


def test_a_trial_without_a_saved_model(saved_study):
    url, storage, study = saved_study
    unsaved = [t.number for t in study.trials if str(t.number) not in study.user_attrs["saved_models"]]
    for number in unsaved:
        assert load_saved_model(url, storage, "saved", number) is None


def saved_trial_page(saved_study, monkeypatch) -> tuple[AppTest, str]:
    """The Trial page of the saved study's first kept model, and that trial's number."""
    url, _, study = saved_study
    number = next(iter(study.user_attrs["saved_models"]))
    monkeypatch.setenv("DIGITUNE_STORAGE", url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(page="Trial", study="saved", trial=number)
    at.run(timeout=60)
    assert not at.exception, at.exception
    return at, number


def test_trial_page_shows_the_saved_model(saved_study, monkeypatch):
    at, _ = saved_trial_page(saved_study, monkeypatch)
    assert "Saved model" in [s.value for s in at.subheader]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the model (.keras)" in labels
    assert "Download a submission CSV (held-out test images)" in labels
    assert any("Misclassified validation images" in m.value for m in at.markdown)
