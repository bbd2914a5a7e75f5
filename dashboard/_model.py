"""A trial's saved model in the dashboard: load it, find its mistakes, label an uploaded digit.

Models come from digitune's artifact store (read only, loaded in Keras' safe mode); data
from the study's stored spec. Uploads are checked before anything decodes them: at most
``MAX_UPLOAD_BYTES`` and ``MAX_UPLOAD_SIDE`` pixels a side, PNG only (a decompression
bomb, a small file that claims huge dimensions, is refused before its pixels are decoded).
"""

from __future__ import annotations

import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

MAX_UPLOAD_BYTES = 1 << 20  # 1 MiB
MAX_UPLOAD_SIDE = 1024


class UploadError(ValueError):
    """An uploaded image the dashboard will not decode; the message says why."""


@dataclass
class SavedModel:
    trial: int
    keras_bytes: bytes
    model: Any
    dataset: Any  # models.Dataset


def load_saved_model(url: str, storage: optuna.storages.BaseStorage, study_name: str, number: int,
                     artifacts: str | None = None) -> SavedModel | None:
    """Trial ``number``'s model if digitune kept it, with the study's data; None if it was not kept."""
    from digitune.models import load_dataset, load_model, save_model
    from digitune.search import ModelKeeper, artifact_dir, stored_spec

    study = optuna.load_study(study_name=study_name, storage=storage)
    keeper = ModelKeeper(artifact_dir(url, artifacts), keep=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        if not keeper.fetch(study, number, path):
            return None
        model = load_model(path, compile=True)
        save_model(model, path)  # the download loads in plain Keras, even a model an older digitune kept
        keras_bytes = path.read_bytes()
    spec = stored_spec(study)
    dataset = load_dataset(spec.data.source, **spec.data.load_kwargs())
    return SavedModel(number, keras_bytes, model, dataset)


def misclassified(saved: SavedModel, limit: int = 24) -> list[dict[str, Any]]:
    """Up to ``limit`` validation images the model gets wrong, most confident mistakes first."""
    from digitune.models import predict_proba

    x, y = saved.dataset.x_val, saved.dataset.y_val
    probabilities = predict_proba(saved.model, x)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:limit]
    return [{
        "index": int(i),
        "image": _display(x[i]),
        "true": int(y[i]),
        "predicted": int(predicted[i]),
        "probability": float(probabilities[i, predicted[i]]),
    } for i in wrong]


def _display(image: np.ndarray, side: int = 84) -> np.ndarray:
    """A uint8 image scaled up (nearest neighbour) so 8x8 digits are visible."""
    pixels = np.clip(image, 0, 1) * 255
    factor = max(1, side // max(image.shape[:2]))
    return np.kron(pixels, np.ones((factor, factor))).astype(np.uint8)


def predict_upload(saved: SavedModel, data: bytes) -> np.ndarray:
    """Class probabilities for an uploaded PNG, brought to the study's size and ink convention.

    The image is converted to grayscale, resized to the training images' size, scaled to
    [0, 1], and inverted when its background is light (the data sets are light ink on
    dark), so a digit drawn black on white is read as the model expects.
    """
    from PIL import Image, UnidentifiedImageError

    from digitune.models import predict_proba

    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"the image is {len(data):,} bytes; upload at most {MAX_UPLOAD_BYTES:,} bytes")
    try:
        with warnings.catch_warnings():  # Pillow only warns below twice its pixel limit: refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        if image.format != "PNG":
            raise UploadError(f"expected a PNG image, got {image.format or 'an unknown format'}")
        if max(image.size) > MAX_UPLOAD_SIDE:
            raise UploadError(f"the image is {image.size[0]}x{image.size[1]} pixels; "
                              f"upload at most {MAX_UPLOAD_SIDE} pixels a side")
        height, width = saved.dataset.info.image_shape
        pixels = np.asarray(image.convert("L").resize((width, height), Image.LANCZOS), dtype=np.float32) / 255
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(f"the image is too large to decode, a possible decompression bomb ({exc}); "
                          f"upload at most {MAX_UPLOAD_SIDE} pixels a side") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # ValueError: e.g. a text chunk bomb; SyntaxError: Pillow's "broken PNG file" (a chunk cut short)
        raise UploadError(f"not a readable PNG image ({exc})") from exc
    if pixels.mean() > 0.5:
        pixels = 1.0 - pixels
    return predict_proba(saved.model, pixels[None])[0]


def submission_csv(saved: SavedModel) -> str:
    """``ImageId,Label`` for the study's held-out test images, as a Kaggle submission."""
    from digitune.models import predict_proba

    labels = predict_proba(saved.model, saved.dataset.x_test).argmax(axis=1)
    return "ImageId,Label\n" + "".join(f"{i},{int(v)}\n" for i, v in enumerate(labels, start=1))
