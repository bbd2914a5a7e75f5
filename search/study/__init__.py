"""The study room: open (create, resume, submit) a study, load one, and queue its first trials."""

from ._first_trials import enqueue_first_trials, warm_start_params
from ._load import (
    FINISHED,
    StudyDeletedError,
    StudyNotFoundError,
    count_finished,
    deleted_as_error,
    is_gone,
    load_study,
    stored_spec,
)
from ._open import open_study, open_submitted

__all__ = ["FINISHED", "StudyDeletedError", "StudyNotFoundError", "count_finished", "deleted_as_error",
           "enqueue_first_trials", "is_gone", "load_study", "open_study", "open_submitted", "stored_spec", "warm_start_params"]
