"""The trial loop room: run a study's trials until its budget is spent, one log line each."""

from ._log import describe_trial
from ._trials import MAX_CONSECUTIVE_FAILURES, RunSummary, run_study, run_trials

__all__ = ["MAX_CONSECUTIVE_FAILURES", "RunSummary", "describe_trial", "run_study", "run_trials"]
