"""digitune's dashboard: a Streamlit app over a study storage, read-only.

``_reader`` reads a storage (refreshing incrementally; ``_sql`` reads Optuna's tables) into
``_data``'s records, and ``_records`` gives the pages their rows,
``_figures`` turns records into Plotly figures, ``app.py`` is the thin Streamlit page.
Run it with ``digitune dashboard`` or ``streamlit run dashboard/app.py -- --storage URL``.
"""

from ._data import HEARTBEAT_ALIVE_SECONDS, RECENT_START_SECONDS, StudyData, family_of, trial_alive
from ._reader import Reader, storage_url
from ._records import compare_rows, learning_curves, model_layers, running_trials, study_row, study_summary
from ._sql import heartbeats, read_trials
from ._details import compare_figure, confusion_figure, per_class_figure, table_csv, trial_curves_figure, trials_table
from ._figures import curves_figure, families_figure, history_figure, params_figure, pareto_figure, timeline_figure
from ._optuna_plots import OPTUNA_PLOTS, family_importances, importances_figure, optuna_figure

__all__ = [
    "HEARTBEAT_ALIVE_SECONDS",
    "OPTUNA_PLOTS",
    "RECENT_START_SECONDS",
    "Reader",
    "StudyData",
    "compare_figure",
    "compare_rows",
    "confusion_figure",
    "curves_figure",
    "families_figure",
    "family_importances",
    "family_of",
    "heartbeats",
    "history_figure",
    "importances_figure",
    "learning_curves",
    "model_layers",
    "optuna_figure",
    "params_figure",
    "pareto_figure",
    "per_class_figure",
    "read_trials",
    "running_trials",
    "storage_url",
    "study_row",
    "study_summary",
    "table_csv",
    "timeline_figure",
    "trial_alive",
    "trial_curves_figure",
    "trials_table",
]
