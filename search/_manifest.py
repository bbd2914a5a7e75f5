"""What a study's results depend on, stored on it when it is created: versions, backend, device, data."""

from __future__ import annotations

from typing import Any

from digitune.models import Dataset


def manifest(dataset: Dataset) -> dict[str, Any]:
    """What a result depends on: package versions, Keras backend, device, data fingerprint."""
    import importlib.metadata
    import platform

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    from digitune.models import describe_device

    import keras

    backend = keras.backend.backend()
    backend_package = {"tensorflow": "tensorflow-cpu", "torch": "torch", "jax": "jax"}.get(backend, backend)
    packages = ["digitune", "keras", "optuna", "optuna-integration", "numpy", "scikit-learn", "sqlalchemy",
                backend_package, "tensorflow"]
    return {
        "digitune": version("digitune"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keras_backend": backend,
        "device": describe_device(),
        "packages": {p: version(p) for p in packages if version(p)},
        "dataset_fingerprint": dataset.info.fingerprint,
        "dataset_source": dataset.info.source,
    }
