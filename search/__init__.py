"""digitune's Optuna side: study specs, the search space, the objective, storage and runs.

Depends on ``models``; never the other way round.
"""

from ._objective import Objective
from ._report import list_studies, study_detail, trial_record
from ._runner import FINISHED, RunSummary, count_finished, StudyNotFoundError, load_study, open_study, run_study, stored_spec
from ._space import sample_configs
from ._spec import PRUNERS, SAMPLERS, DataSpec, SpecError, StudySpec, load_spec, spec_from_dict
from ._storage import DEFAULT_STORAGE, StorageError, open_storage, redact, resolve_storage_url

__all__ = [
    "DEFAULT_STORAGE",
    "FINISHED",
    "PRUNERS",
    "SAMPLERS",
    "DataSpec",
    "Objective",
    "RunSummary",
    "SpecError",
    "StorageError",
    "StudyNotFoundError",
    "StudySpec",
    "count_finished",
    "list_studies",
    "load_spec",
    "load_study",
    "open_storage",
    "open_study",
    "redact",
    "resolve_storage_url",
    "run_study",
    "sample_configs",
    "spec_from_dict",
    "stored_spec",
    "study_detail",
    "trial_record",
]
