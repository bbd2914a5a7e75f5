"""Running a study: create or resume it, check it matches its file, optimize with progress."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from digitune.models import PRESET_NAMES, Dataset, load_dataset

from ._artifacts import ModelKeeper
from ._claim import Heartbeat, SlotLock, is_stale_failure, study_lock  # study_lock re-exported
from ._deadline import STOPPED_ATTR, monotonic_deadline
from ._manifest import manifest
from ._objective import BASELINE_ATTR, START_ATTR, Objective
from ._reconnect import StorageUnreachable, keep_reconnecting
from ._signals import interrupts
from ._space import check_space_fits, default_params
from ._warm import WARM_ATTR, warm_start_params
from ._spec import Choice, Param, Range, SpecError, StudySpec, spec_from_dict

from ._schema import DATASET_ATTR, MANIFEST_ATTR, SPEC_ATTR, stored_dataset, stored_record  # DATASET_ATTR, SPEC_ATTR re-exported

_logger = logging.getLogger("digitune")

AGENTS_STUDY = "digitune-agents"  # the agent registry (see _queue): a reserved study, not listed
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 10
_SlotLock = SlotLock  # its name here before it moved to _claim (bench/storage.py uses it)


class StudyNotFoundError(LookupError):
    """No study of that name in the storage."""


class StudyDeletedError(StudyNotFoundError):
    """The study was deleted (``digitune delete``) while this process worked on it."""

    def __init__(self, name: str):
        super().__init__(f"study {name!r} was deleted while this process worked on it; nothing left to run")


def _gone(study: optuna.Study) -> bool:
    try:
        study._storage.get_study_id_from_name(study.study_name)
    except KeyError:
        return True
    return False


@contextlib.contextmanager
def deleted_as_error(study: optuna.Study) -> Iterator[None]:
    """A ``KeyError`` from a study deleted under this block becomes ``StudyDeletedError``."""
    try:
        yield
    except KeyError:
        if _gone(study):
            raise StudyDeletedError(study.study_name) from None
        raise


@dataclass
class RunSummary:
    study: optuna.Study
    finished: int
    ran: int
    failed: int
    recycled: bool = False  # stopped after ``max_trials`` trials so a fresh process can go on
    gave_up: bool = False  # stopped after ``MAX_CONSECUTIVE_FAILURES`` failures in a row


def make_sampler(spec: StudySpec, *, stream: tuple[int, ...] = ()) -> optuna.samplers.BaseSampler:
    """The spec's sampler with its ``sampler_options``, seeded from ``spec.seed`` and ``stream``.

    A new study's sampler is seeded with ``spec.seed`` itself. A resumed study passes the
    number of trials it already holds (and a worker its process id) as ``stream``; the seed
    then comes from NumPy's ``SeedSequence`` of all of them, so resumed runs and concurrent
    workers draw new, distinct parameters instead of repeating each other's.
    """
    seed = int(np.random.SeedSequence([spec.seed, *stream]).generate_state(1)[0]) if stream else spec.seed
    options = dict(spec.sampler_options)
    if spec.sampler == "grid":
        factory: Callable[..., optuna.samplers.BaseSampler] = optuna.samplers.GridSampler
        options.setdefault("search_space", grid_search_space(spec, points=options.pop("points", 4)))
    else:
        factory = {
            "tpe": optuna.samplers.TPESampler,
            "random": optuna.samplers.RandomSampler,
            "qmc": optuna.samplers.QMCSampler,
            "cmaes": optuna.samplers.CmaEsSampler,
            "gp": optuna.samplers.GPSampler,
            "nsga2": optuna.samplers.NSGAIISampler,
        }[spec.sampler]
        if spec.sampler in ("qmc", "cmaes", "gp"):
            options.setdefault("independent_sampler", optuna.samplers.RandomSampler(seed=seed))
            options.setdefault("warn_independent_sampling", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(seed=seed, **options)
    except TypeError as exc:
        raise SpecError(f"{spec.path or 'study'}: study.sampler_options do not fit the {spec.sampler} sampler: "
                        f"{exc}") from exc


def grid_search_space(spec: StudySpec, *, points: int = 4) -> dict[str, list[Any]]:
    """Every searched parameter as a list for the grid sampler: choices as they are, ranges as ``points`` values."""
    def values(param: Param) -> list[Any]:
        if isinstance(param, Choice):
            return list(param.choices)
        assert isinstance(param, Range)
        if param.is_int and param.high - param.low + 1 <= points:
            return list(range(int(param.low), int(param.high) + 1))
        grid = np.geomspace(param.low, param.high, points) if param.log else np.linspace(param.low, param.high, points)
        return sorted({int(round(v)) for v in grid}) if param.is_int else [float(v) for v in grid]

    space = {name: values(p) for name, p in spec.space.items() if isinstance(p, (Range, Choice))}
    for family, params in spec.family_space.items():
        space.update({f"{family}_{name}": values(p) for name, p in params.items() if isinstance(p, (Range, Choice))})
    return space


def make_pruner(spec: StudySpec, train_images: int | None = None) -> optuna.pruners.BasePruner:
    """The spec's pruner with its ``pruner_options``; epochs are the resource.

    With ``fidelity = "time"`` a trial's steps count epochs' worth of the study's typical
    training time rather than its own epochs (``search/_fidelity.py``); the pruner is the same.

    ``train_images``, the size of an epoch when the data is loaded, sets Hyperband's and
    successive halving's fewest epochs before stopping a trial (``_min_resource``).
    """
    options = dict(spec.pruner_options)
    if spec.is_multi_objective or spec.pruner == "none":
        return optuna.pruners.NopPruner()  # multi-objective trials stop early by their own rule instead
    defaults: dict[str, dict[str, Any]] = {
        "hyperband": {"min_resource": _min_resource(spec, train_images), "max_resource": max(spec.max_epochs, 2),
                      "reduction_factor": 3},
        "median": {"n_startup_trials": 5, "n_warmup_steps": 1},
        "successive-halving": {"min_resource": _min_resource(spec, train_images), "reduction_factor": 3},
        "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 1},
        "threshold": {"lower": 0.2, "n_warmup_steps": 1} if spec.directions[0] == "maximize" else {"upper": 10.0},
    }
    factory = {
        "hyperband": _Hyperband,
        "median": optuna.pruners.MedianPruner,
        "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }[spec.pruner]
    try:
        return factory(**{**defaults[spec.pruner], **options})
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{spec.path or 'study'}: study.pruner_options do not fit the {spec.pruner} pruner: "
                        f"{exc}") from exc


class _Hyperband(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with TPE's draws for a trial sharing one read of the study's trials.

    Under Hyperband, Optuna hands the sampler a view of the study for the trial's bracket,
    made anew for every parameter it samples (``optuna.pruners._filter_study``), and each new
    view starts with an empty trial cache, so every draw read all trials back from storage
    once more than it needs to (16 reads a trial on the digits' space, against 9 without a
    pruner). Here the views share the study's own cache, which Optuna empties at every
    ``ask`` and ``tell``, as it does for a study without Hyperband: the same draws, about
    0.85x the sampling time (``bench/sampler_cost.py``). Pruning decisions still read fresh
    trials (the view's ``get_trials``).
    """

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        bracket = super()._create_bracket_study(study, bracket_id)
        object.__setattr__(bracket, "_thread_local", study._thread_local)
        return bracket


# Images a model should have trained on before a pruner judges it (three epochs of the 8x8 digits).
JUDGE_AFTER_IMAGES = 3000


def _min_resource(spec: StudySpec, train_images: int | None = None) -> int:
    """Hyperband's and successive halving's ``min_resource``, in epochs: 1 to 3.

    Optuna's Keras callback reports epoch k as step k - 1, so a trial is first judged after
    ``min_resource + 1`` epochs. On the 8x8 digits (1,257 training images) a model's first
    epoch costs as much as its next several (TensorFlow traces its training step), so
    stopping early saves little time, and a few epochs of 40 updates are a noisy judge of a
    model: 3 once trials may run 9 epochs or more. An epoch of ``JUDGE_AFTER_IMAGES`` images
    or more (Fashion-MNIST's 42,000) is seconds of arithmetic and hundreds of updates, so 1
    is enough there: a bad draw is stopped after two epochs instead of four, and Hyperband
    gets a third bracket, so fewer of its trials run to the end unjudged. Short studies (at
    most 8 epochs) keep 1 or 2, so they still have brackets to prune in.
    """
    most = max(1, min(3, spec.max_epochs // 3))
    if not train_images:
        return most
    return max(1, min(most, math.ceil(JUDGE_AFTER_IMAGES / train_images)))


def stored_spec(study: optuna.Study) -> StudySpec:
    """The spec a study was created with, as digitune stored it on the study."""
    data = stored_record(study.user_attrs, SPEC_ATTR)
    if not data:
        raise SpecError(f"study {study.study_name!r} was not created by digitune (it has no stored spec)")
    return spec_from_dict(data, source=f"study {study.study_name!r}")


def load_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """An existing study, or ``StudyNotFoundError`` listing the names there are."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError as exc:
        names = optuna.get_all_study_names(storage=storage)
        known = ", ".join(sorted(names)) if names else "none yet"
        raise StudyNotFoundError(
            f"no study named {name!r} in this storage (studies: {known}); check the name or --storage") from exc


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, dataset: Dataset, *,
               seed_offset: int = 0, on_ready: Callable[[optuna.Study], None] | None = None) -> optuna.Study:
    """Create the study for ``spec``, or resume it if it exists and was made from the same definition.

    ``seed_offset`` goes into the sampler's seed of a resumed study (a worker passes its
    process id, so that workers joining at once do not draw the same parameters).
    ``on_ready`` is called as soon as other workers can join the study: before the manifest
    is written, which imports the backend (seconds that workers started then spend
    importing it themselves).
    """
    keep_reconnecting(storage)  # a long-running process: a database that blinks is waited for
    check_space_fits(spec, dataset.info.image_shape)
    pruner = make_pruner(spec, len(dataset.x_train))
    warm = warm_start_params(spec, storage, dataset.info.image_shape) \
        if spec.warm_start and _unstarted(spec.name, storage) else []  # a study read only where it matters
    with study_lock(storage, spec.name):  # processes opening a new study at once: one creates it, whole
        study, created = _load_or_create(spec, storage, dataset, pruner, warm)
    with deleted_as_error(study):  # `digitune delete` may come in as soon as the lock is free
        if created:
            if on_ready is not None:
                on_ready(study)
            study.set_user_attr(MANIFEST_ATTR, manifest(dataset))
        else:
            _open_stored(study, spec, storage, dataset, seed_offset=seed_offset, on_ready=on_ready, warm=warm)
    return study


def _unstarted(name: str, storage: optuna.storages.BaseStorage) -> bool:
    """Whether the study ``name`` will get its first trials now: it is new, or submitted and not yet run."""
    try:
        return not optuna.load_study(study_name=name, storage=storage).user_attrs.get(DATASET_ATTR)
    except KeyError:
        return True


def _open_stored(study: optuna.Study, spec: StudySpec, storage: optuna.storages.BaseStorage, dataset: Dataset, *,
                 seed_offset: int, on_ready: Callable[[optuna.Study], None] | None, warm: list) -> None:
    """Check a stored study against ``spec`` and ``dataset``, and record the data if it was submitted."""
    study.sampler = make_sampler(spec, stream=(len(study.get_trials(deepcopy=False)), seed_offset))
    _check_definition(study, spec)
    fingerprint = stored_dataset(study.user_attrs).get("fingerprint")
    if fingerprint and fingerprint != dataset.info.fingerprint:
        raise SpecError(
            f"study {spec.name!r} was run on data with fingerprint {fingerprint}, but {dataset.info.source} "
            f"has fingerprint {dataset.info.fingerprint}; use the same data or a new study name")
    new = False
    if not fingerprint:  # a submitted study: the first agent to run it records the data it runs on
        with study_lock(storage, spec.name):
            if not study.user_attrs.get(DATASET_ATTR):
                study.set_user_attr(DATASET_ATTR, dataset.info.to_dict())
                study.set_user_attr(MANIFEST_ATTR, manifest(dataset))
                new = True  # this agent queues the first trials
    _enqueue_first_trials(study, spec, dataset.info.image_shape, new=new, warm=warm)
    if on_ready is not None:
        on_ready(study)


def _load_or_create(spec: StudySpec, storage: optuna.storages.BaseStorage, dataset: Dataset,
                    pruner: optuna.pruners.BasePruner, warm: list) -> tuple[optuna.Study, bool]:
    """The stored study, or a new one with its spec, data and first trials; and whether it is new."""
    try:
        return optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec), pruner=pruner), False
    except KeyError:
        pass
    study = optuna.create_study(storage=storage, study_name=spec.name, sampler=make_sampler(spec),
                                pruner=pruner, directions=list(spec.directions), load_if_exists=True)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    study.set_user_attr(DATASET_ATTR, dataset.info.to_dict())
    _enqueue_first_trials(study, spec, dataset.info.image_shape, new=True, warm=warm)
    return study, True


def _check_definition(study: optuna.Study, spec: StudySpec) -> None:
    old = stored_spec(study)
    if old.search_definition() != spec.search_definition():
        differing = sorted(k for k, v in spec.search_definition().items() if old.search_definition()[k] != v)
        raise SpecError(
            f"{spec.path or 'the study file'} disagrees with the stored study {spec.name!r} on "
            f"{', '.join(differing)}; give the study a new [study] name, or delete the old study first")


def open_submitted(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study for a submitted ``spec``, created without loading its data (agents load it).

    An existing study must have the same search definition; its stored spec is replaced by
    ``spec`` (a new budget, say). The sampler and pruner are built once to check their options.
    """
    make_sampler(spec), make_pruner(spec)
    if spec.warm_start:
        load_study(spec.warm_start, storage)  # a mistyped name is refused before anything is stored
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        study = optuna.create_study(storage=storage, study_name=spec.name, directions=list(spec.directions),
                                    load_if_exists=True)
    else:
        _check_definition(study, spec)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study


def _enqueue_first_trials(study: optuna.Study, spec: StudySpec, image_shape: tuple[int, ...], *,
                          new: bool, warm: list | None = None) -> None:
    """Queue the tutorial presets (tagged ``baseline``) and, in a ``new`` study, the warm start and the space's defaults.

    The presets are queued once per study, whenever one is missing. With ``start =
    "defaults"`` a new study's next trials are a known-good model per family from its own
    space (``default_params``), tagged ``start``: a short budget starts from a good model
    instead of a random draw. Before them, ``warm`` (``warm_start_params``): an earlier
    study's best configurations, tagged ``warm_start``. They are ordinary trials otherwise
    (the pruner may stop them), queued only when the study is created, so a resumed study is
    not sent back.
    """
    if spec.baselines == "tutorial":
        done = {t.user_attrs.get(BASELINE_ATTR) for t in study.get_trials(deepcopy=False)}
        for name in PRESET_NAMES:
            if name not in done:
                study.enqueue_trial({}, user_attrs={BASELINE_ATTR: name})
    if new:
        for origin, params in (warm or [])[:spec.trials]:
            study.enqueue_trial(params, user_attrs={WARM_ATTR: origin})
    if new and spec.start == "defaults" and spec.sampler != "grid":
        for params in default_params(spec, image_shape)[:spec.trials]:  # none left waiting in a tiny study
            study.enqueue_trial(params, user_attrs={START_ATTR: "defaults"})


def count_finished(study: optuna.Study) -> int:
    with deleted_as_error(study):
        return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_study(
    spec: StudySpec,
    storage: optuna.storages.BaseStorage,
    *,
    dataset: Dataset | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    seed_offset: int = 0,
    keeper: ModelKeeper | None = None,
    max_trials: int | None = None,
    study: optuna.Study | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_start: Callable[[optuna.Trial], None] | None = None,
    wait: bool = True,
) -> RunSummary:
    """Run ``spec`` until its study holds ``n_trials`` finished (complete or pruned) trials.

    ``max_trials`` caps the trials this call runs (a worker recycled after that many, for
    whoever wants fresh processes; memory no longer needs it, see ``models.train``).

    A study that already exists is resumed, so running the same file again continues it.
    Trials that fail are recorded with their reason and do not count; the run stops after
    ``MAX_CONSECUTIVE_FAILURES`` failures in a row, so a broken space cannot loop forever.
    Several workers may run this at once on one study: together they finish exactly
    ``n_trials`` (see ``SlotLock``), and a worker with no trial left to start waits while
    others' trials run, in case one fails and its slot comes free (unless ``wait`` is false:
    an agent goes on to other studies instead).

    A time budget, ``timeout`` seconds from now (default: the spec's, without ``deadline``)
    or the wall-clock ``deadline`` (``time.time()``, shared by a run's processes), whichever
    comes first: past it no trial starts and running ones stop at their next epoch end.

    ``should_stop`` is asked before each trial (an agent's study was stopped, or a more
    urgent one came in); ``on_start`` hears of each trial as it starts.

    A database server that goes away is waited for (``keep_reconnecting``); past the wait,
    ``StorageUnreachable``. A study deleted meanwhile raises ``StudyDeletedError``.
    """
    keep_reconnecting(storage)
    n_trials = spec.trials if n_trials is None else n_trials
    ends = monotonic_deadline(spec.timeout if timeout is None and deadline is None else timeout, deadline)
    if dataset is None:
        dataset = load_dataset(spec.data.source, **spec.data.load_kwargs())
    if study is None:  # a caller that already opened it (and checked it against spec and data) passes it in
        study = open_study(spec, storage, dataset, seed_offset=seed_offset)
    already = count_finished(study)
    if already >= n_trials:
        _logger.info("study %r already has %d finished trials (asked for %d)", spec.name, already, n_trials)
        return RunSummary(study, already, 0, 0)

    counts = {"ran": 0, "failed": 0, "failed_in_a_row": 0}

    with interrupts() as interrupt, SlotLock(storage, study.study_name) as slots, deleted_as_error(study):
        objective = Objective(spec, dataset, interrupt, keeper, deadline=ends)
        waiting_since: float | None = None
        while True:
            interrupt.check()
            if ends is not None and time.monotonic() >= ends:
                break
            if should_stop is not None and should_stop():
                break
            trial = slots.claim(study, n_trials)
            if trial is None:
                waiting_since = waiting_since or time.monotonic()
                if (not wait or count_finished(study) >= n_trials or not slots.heartbeats
                        or time.monotonic() - waiting_since > slots.patience):
                    # Without heartbeats (a gRPC proxy), or past the grace period, a trial that stays
                    # running may belong to no live worker: leave it rather than wait for ever.
                    break
                time.sleep(1.0)  # the other workers' running trials may still fail; then we take over
                continue
            waiting_since = None
            if on_start is not None:
                on_start(trial)
            frozen = _run_one(study, storage, trial, objective)
            counts["ran"] += 1
            if frozen.state == TrialState.FAIL:
                counts["failed"] += 1
                counts["failed_in_a_row"] += 1
            else:
                counts["failed_in_a_row"] = 0
            _logger.info("%s: %s", study.study_name, describe_trial(frozen))
            if on_trial is not None:
                on_trial(study, frozen)
            if counts["failed_in_a_row"] >= MAX_CONSECUTIVE_FAILURES:
                _logger.error("stopping: %d trials in a row failed; see their fail_reason (digitune show %s)",
                              counts["failed_in_a_row"], study.study_name)
                return RunSummary(study, count_finished(study), counts["ran"], counts["failed"], gave_up=True)
            if max_trials is not None and counts["ran"] >= max_trials:
                finished = count_finished(study)
                more = finished < n_trials and (ends is None or time.monotonic() < ends)  # past it, none to recycle for
                return RunSummary(study, finished, counts["ran"], counts["failed"], recycled=more)
    return RunSummary(study, count_finished(study), counts["ran"], counts["failed"])


def _run_one(study: optuna.Study, storage: optuna.storages.BaseStorage, trial: optuna.Trial,
             objective: Objective) -> FrozenTrial:
    """Run ``objective`` on ``trial`` with heartbeats, and tell Optuna how it ended.

    Like ``Study.optimize`` does for one trial: pruned trials are told as pruned, any
    exception fails this trial alone (its reason is in the user attribute ``fail_reason``),
    and Ctrl-C fails it and stops the run. A database that stayed away past the reconnect
    deadline stops the run too; the trial, left running, is failed after the grace period.
    """
    with Heartbeat(storage, study, trial):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            return _tell(study, trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            _tell(study, trial, state=TrialState.FAIL)
            raise
        except StorageUnreachable:  # nothing can be told
            raise
        except Exception:  # recorded by the objective; the study goes on
            if _gone(study):
                raise StudyDeletedError(study.study_name) from None
            return _tell(study, trial, state=TrialState.FAIL)
    return _tell(study, trial, values)


def _tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, *,
          state: TrialState | None = None) -> FrozenTrial:
    """``study.tell``; a trial another worker failed meanwhile (its heartbeat went stale) stays failed."""
    try:
        frozen = study.tell(trial, values, state=state, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale between tell's look and its write
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    if is_stale_failure(frozen):
        _logger.warning("%s: trial %d was failed by another worker while this one could not reach the database; "
                        "its result is dropped and its parameters run again as a new trial",
                        study.study_name, trial.number)
    return frozen


def describe_trial(trial: FrozenTrial) -> str:
    """One line for the log: trial number, state, value, family, size and time."""
    attrs: dict[str, Any] = trial.user_attrs
    parts = [f"trial {trial.number} {trial.state.name.lower()}"]
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)  # under fidelity "time" steps count time; epochs_run, the epochs
        epochs = attrs.get("epochs_run", step + 1)
        parts.append(f"at epoch {epochs} with val_accuracy={trial.intermediate_values[step]:.4f}")
    elif trial.values is not None:
        parts.append("value=" + ", ".join(f"{v:.4g}" for v in trial.values))
    if STOPPED_ATTR in attrs:
        parts.append(f"stopped at the deadline after {attrs[STOPPED_ATTR]} epochs")
    if BASELINE_ATTR in attrs:
        parts.append(f"baseline {attrs[BASELINE_ATTR]}")
    if START_ATTR in attrs:
        parts.append(f"the space's {attrs[START_ATTR]}")
    if WARM_ATTR in attrs:
        parts.append(f"warm start from {attrs[WARM_ATTR]}")
    if "family" in attrs:
        parts.append(f"{attrs['family']}, {attrs.get('params_count', 0):,} params, "
                     f"{attrs.get('train_seconds', 0):.1f} s")
    if "fail_reason" in attrs:
        parts.append(attrs["fail_reason"])
    return " ".join(parts[:2]) + ("" if len(parts) <= 2 else " (" + "; ".join(parts[2:]) + ")")
