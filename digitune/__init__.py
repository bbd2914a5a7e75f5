"""digitune: hyperparameter search for Keras digit classifiers, persisted as Optuna studies.

``digitune.models`` is the Keras side, ``digitune.search`` the Optuna side and
``digitune.dashboard`` the Streamlit app (each folder sits at the repository root). Importing
this package loads nothing heavy: the public names below import their room on first use.
"""

from __future__ import annotations

from ._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY: dict[str, str] = {name: ".api" for name in (
    "run", "load_spec", "spec_from_dict", "load_dataset", "open_storage", "load_study", "trials", "trials_frame",
    "export_model", "DataError", "Dataset", "ExportResult", "RunSummary", "SpecError", "StorageError", "StudyNotFoundError",
    "StudySpec")}

__all__ = ["__version__", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
