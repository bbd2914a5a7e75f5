"""digitune's Optuna side: study specs, the search space, the objective, storage and runs.

Depends on ``models``; never the other way round.
"""

from ._admin import EXPORT_FORMATS, Check, delete_study, export_data, export_record, run_checks, write_export
from ._artifacts import ModelKeeper, artifact_dir
from ._final import (
    ExportResult,
    NoModelError,
    best_model,
    best_trial,
    export_model,
    read_prediction_images,
    write_predictions,
)
from ._objective import Objective
from .service._queue import AGENTS_STUDY, QueueEntry, QueueError, list_agents, queue_entries, queue_entry, resume, stop, submit
from ._report import list_studies, study_detail, trial_record
from ._trial_record import TrialRecord
from ._schema import DATASET_ATTR, MANIFEST_ATTR, SAVED_ATTR, SPEC_ATTR, stored_record
from .loop import RunSummary, run_study
from .study import FINISHED, StudyNotFoundError, count_finished, load_study, open_study, stored_spec
from ._space import sample_configs
from ._spec import PRUNERS, SAMPLERS, DataSpec, SpecError, StudySpec, load_spec, spec_from_dict
from .storage._open import (DEFAULT_STORAGE, NoStudyDatabaseError, StorageError, open_storage, read_storage, redact,
                            resolve_storage_url)

__all__ = [
    "DATASET_ATTR",
    "MANIFEST_ATTR",
    "SAVED_ATTR",
    "SPEC_ATTR",
    "stored_record",
    "AGENTS_STUDY",
    "ExportResult",
    "QueueEntry",
    "QueueError",
    "list_agents",
    "queue_entries",
    "queue_entry",
    "resume",
    "stop",
    "submit",
    "ModelKeeper",
    "NoModelError",
    "artifact_dir",
    "best_model",
    "best_trial",
    "export_model",
    "read_prediction_images",
    "write_predictions",
    "DEFAULT_STORAGE",
    "EXPORT_FORMATS",
    "FINISHED",
    "PRUNERS",
    "SAMPLERS",
    "Check",
    "DataSpec",
    "Objective",
    "RunSummary",
    "SpecError",
    "NoStudyDatabaseError",
    "StorageError",
    "StudyNotFoundError",
    "StudySpec",
    "count_finished",
    "delete_study",
    "export_data",
    "export_record",
    "list_studies",
    "load_spec",
    "load_study",
    "open_storage",
    "read_storage",
    "open_study",
    "redact",
    "resolve_storage_url",
    "run_checks",
    "run_study",
    "sample_configs",
    "spec_from_dict",
    "stored_spec",
    "study_detail",
    "trial_record",
    "TrialRecord",
    "write_export",
]
