"""A study database with every kind of trial the dashboard shows, made once for the dashboard's tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from conftest import write_study
from digitune.search import load_spec, open_storage, run_study, spec_from_dict

_BUILT: dict[str, "DashboardDB"] = {}  # one database per test process, shared by the dashboard's tests
FAIL_REASON = "TrainingError: the loss became NaN at epoch 1; try a lower learning rate"


@dataclass
class DashboardDB:
    url: str
    path: Path
    before: tuple[int, int, str]  # size, mtime_ns, sha256 of the database file once built
    user_attrs: dict[str, dict]

    def assert_unchanged(self) -> None:
        assert file_state(self.path) == self.before, "the study database file changed"
        for name, attrs in self.user_attrs.items():
            assert optuna.load_study(study_name=name, storage=self.url).user_attrs == attrs


def file_state(path: Path) -> tuple[int, int, str]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _spec(folder: Path, name: str, *, trials: int, family: str = '["mlp", "cnn"]', **study):
    spec = load_spec(write_study(folder, name, trials=trials, family=family))
    data = spec.to_dict()
    data["study"].update(study)
    return spec_from_dict(data, source=str(folder / f"{name}.toml"))


def build_dashboard_db(folder: Path, digits) -> DashboardDB:
    """Three real studies in one SQLite file; built once per session and then only read."""
    if "db" in _BUILT:
        return _BUILT["db"]
    path = folder / "dashboard.db"
    url = f"sqlite:///{path}"
    storage = open_storage(url)
    run_study(_spec(folder, "tiny", trials=10, sampler="random", baselines="tutorial", start="sampler",
                    pruner="threshold", pruner_options={"lower": 0.99, "n_warmup_steps": 1}), storage, dataset=digits)
    run_study(_spec(folder, "pareto", trials=4, sampler="random", objectives=["val_accuracy:max", "params:min"],
                    max_params=3000), storage, dataset=digits)
    # A worker in the middle of a trial: two epochs reported, no heartbeat (so "recently started" decides).
    storage.engine.dispose()
    storage = open_storage(url, heartbeat=False)  # asking for trials by hand, not through optimize()
    study = optuna.load_study(study_name="tiny", storage=storage)
    running = study.ask()
    running.set_user_attr("family", "mlp")
    running.report(0.3, 0)
    running.report(0.4, 1)
    # A study whose every trial failed, with the reason digitune records (no complete trial to plot).
    broken = optuna.create_study(study_name="broken", storage=storage, direction="maximize")
    for key in ("digitune_spec", "dataset"):
        broken.set_user_attr(key, study.user_attrs[key])
    for _ in range(2):
        failed = broken.ask()
        failed.set_user_attr("family", "mlp")
        failed.set_user_attr("fail_reason", FAIL_REASON)
        broken.tell(failed, state=TrialState.FAIL)
    storage.engine.dispose()  # checkpoints the WAL into the file, so later reads leave it as it is
    user_attrs = {name: optuna.load_study(study_name=name, storage=url).user_attrs
                  for name in ("tiny", "pareto", "broken")}
    _BUILT["db"] = DashboardDB(url=url, path=path, before=file_state(path), user_attrs=user_attrs)
    return _BUILT["db"]
