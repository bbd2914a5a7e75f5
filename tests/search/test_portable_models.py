"""What digitune writes works without digitune: its model files load in plain Keras, its workers print no noise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from conftest import REPO, digitune_exe, write_study
from digitune.models import MLPConfig, TrainConfig, load_model, predict_proba, save_model, train
from digitune.search.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

# Run with `python -I` in a folder of its own: drops what still leads to the repository (its
# folder on sys.path, the editable install's finders), checks digitune cannot be imported, then
# loads each model with plain Keras (safe mode, the default) and saves its predictions.
PLAIN_KERAS = r"""
import importlib, importlib.util, json, os, sys

repo = os.path.realpath(sys.argv[1])


def editable(hook):
    return str(getattr(hook, "__module__", "")).startswith("__editable__")


def in_repo(entry):
    path = os.path.realpath(entry or ".")
    return (path == repo or path.startswith(repo + os.sep)) and "site-packages" not in path


sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path[:] = [p for p in sys.path if not in_repo(p)]
sys.path_importer_cache.clear()
for name in ("digitune", "search", "models", "dashboard"):
    assert importlib.util.find_spec(name) is None, f"{name} is still importable"
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError(f"{name} imported")

import keras
import numpy as np

x = np.load(sys.argv[2])
report = {}
for path in sys.argv[3:]:
    try:
        model = keras.models.load_model(path)
    except Exception as exc:
        report[path] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        continue
    np.save(path + ".npy", model.predict(x, verbose=0))
    optimizer = model.optimizer if model.compiled else None
    report[path] = {"optimizer": type(optimizer).__name__ if optimizer else None,
                    "iterations": int(optimizer.iterations.numpy()) if optimizer else None}
print(json.dumps(report))
"""


def _plain_keras(folder: Path, x: np.ndarray, *models: Path) -> dict[str, dict]:
    """Load ``models`` (copied into ``folder``) in a Python that cannot import digitune; their predictions on ``x``."""
    folder.mkdir(exist_ok=True)
    copies = []
    for i, model in enumerate(models):
        copy = folder / f"{i}-{model.stem}.keras"  # an artifact file has no suffix; Keras wants one
        copy.write_bytes(model.read_bytes())
        copies.append(str(copy))
    np.save(folder / "x.npy", x)
    (folder / "plain.py").write_text(PLAIN_KERAS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    result = subprocess.run([sys.executable, "-I", "plain.py", str(REPO), "x.npy", *copies], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for copy in copies:
        report[copy]["copy"] = Path(copy)
        if "error" not in report[copy]:
            report[copy]["predictions"] = np.load(copy + ".npy")
    return {str(model): report[copy] for copy, model in zip(copies, models)}


def test_models_of_every_optimizer_load_in_plain_keras_and_predict_the_same(tmp_path, small_digits):
    x = small_digits.x_test
    files, expected, steps = [], {}, {}
    for optimizer in ("adam", "sgd", "rmsprop"):
        model = train(MLPConfig(units=16), TrainConfig(epochs=2, optimizer=optimizer), small_digits).model
        path = tmp_path / f"{optimizer}.keras"
        save_model(model, path)
        files.append(path)
        expected[str(path)] = predict_proba(model, x)
        steps[str(path)] = int(model.optimizer.iterations.numpy())
    recipe = TrainConfig(epochs=2, schedule="one-cycle", lr_scaling="sqrt", weight_decay=0.01, label_smoothing=0.1,
                         translate=0.1, rotate=0.05, zoom=0.1)  # a schedule, AdamW, smoothing, augmentation layers
    recipe_model = train(MLPConfig(units=16), recipe, small_digits).model
    files.append(tmp_path / "recipe.keras")
    save_model(recipe_model, files[-1])
    expected[str(files[-1])] = predict_proba(recipe_model, x)
    steps[str(files[-1])] = int(recipe_model.optimizer.iterations.numpy())
    as_before = tmp_path / "as-before.keras"
    model = train(MLPConfig(units=16), TrainConfig(epochs=2, optimizer="rmsprop"), small_digits).model
    model.save(as_before)  # how models were saved before: naming digitune's FusedRMSprop

    report = _plain_keras(tmp_path / "plain", x, *files, as_before)
    for path, name in zip(files, ("Adam", "SGD", "RMSprop", "Adam"), strict=True):
        loaded = report[str(path)]
        assert "error" not in loaded, loaded
        assert loaded["optimizer"] == name and loaded["iterations"] == steps[str(path)] > 0
        assert np.allclose(loaded["predictions"], expected[str(path)], rtol=1e-5, atol=1e-6)
        assert np.allclose(predict_proba(load_model(path), x), expected[str(path)], rtol=1e-5, atol=1e-6)
    assert "Could not locate class 'FusedRMSprop'" in report[str(as_before)]["error"]
    assert np.allclose(predict_proba(load_model(as_before), x), predict_proba(model, x))  # digitune still loads those


def test_exports_kept_models_and_dashboard_downloads_load_in_plain_keras(tmp_path, small_digits):
    path = write_study(tmp_path, "portable", trials=2, family='["mlp", "cnn"]', pruner="none")
    path.write_text(path.read_text().replace("seed = 7\n", "seed = 7\nsave_models = 1\n", 1))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert runner.invoke(app, ["run", str(path), "--storage", url]).exit_code == 0
    saved, retrained = tmp_path / "saved.keras", tmp_path / "retrained.keras"
    for output, extra in ((saved, []), (retrained, ["--artifacts", str(tmp_path / "empty")])):
        result = runner.invoke(app, ["export-model", "portable", "-o", str(output), "--storage", url, *extra])
        assert result.exit_code == 0, result.output
    assert "(retrained on train + validation)" in result.output
    study = optuna.load_study(study_name="portable", storage=url)
    number, artifact_id = next(iter(study.user_attrs["saved_models"].items()))
    kept = tmp_path / "studies-artifacts" / artifact_id

    from digitune.dashboard._model import load_saved_model

    download = tmp_path / "download.keras"
    download.write_bytes(load_saved_model(url, study._storage, "portable", int(number)).keras_bytes)

    files = [saved, retrained, kept, download]
    report = _plain_keras(tmp_path / "plain", small_digits.x_test, *files)
    for file in files:
        loaded = report[str(file)]
        assert "error" not in loaded, (file, loaded)
        assert loaded["optimizer"] in ("Adam", "SGD", "RMSprop")
        digitune = predict_proba(load_model(loaded["copy"]), small_digits.x_test)
        assert np.allclose(loaded["predictions"], digitune, rtol=1e-5, atol=1e-6), file


# A line of TensorFlow's C++ log (I0000 00:00:... file.cc:12]), absl's warning, or a notice of its start.
NOTICE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|oneDNN|cuda|TensorFlow binary is optimized", re.IGNORECASE)


def _console_env(**extra: str) -> dict[str, str]:
    """The environment of a user's terminal: no TF_CPP_MIN_LOG_LEVEL (digitune sets it itself)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DIGITUNE_STORAGE")}
    env.update(extra)
    return env


def test_workers_print_no_tensorflow_notices(tmp_path):
    path = write_study(tmp_path, "quiet", trials=4, family='"mlp"', pruner="none")
    result = subprocess.run([digitune_exe(), "run", str(path), "--workers", "2",
                             "--storage", f"sqlite:///{tmp_path / 'quiet.db'}"],
                            cwd=tmp_path, env=_console_env(DIGITUNE_WORKERS="2"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 workers (this process and 1 more" in result.stderr
    assert "1 more worker(s), exit codes [0]" in result.stdout + result.stderr
    noise = [line for line in result.stderr.splitlines() if NOTICE.search(line)]
    assert noise == [], noise


def test_the_notice_check_sees_tensorflow_notices_when_they_are_asked_for(tmp_path):
    # TF_CPP_MIN_LOG_LEVEL=0 asks for everything: the same check must then find TensorFlow's notices.
    result = subprocess.run([sys.executable, "-c", "import digitune.models, tensorflow"], cwd=tmp_path,
                            env=_console_env(TF_CPP_MIN_LOG_LEVEL="0"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert any(NOTICE.search(line) for line in result.stderr.splitlines()), result.stderr


def test_held_stderr_drops_tensorflow_records_below_the_log_level(tmp_path):
    # What a CUDA build prints while it imports, as a CPU worker (no GPU visible) sees it.
    lines = [b"I0000 00:00:1796110623.946142    7470 port.cc:153] oneDNN custom operations are on.\n",
             b"E0000 00:00:1796110623.950000    7470 cuda_dnn.cc:8579] Unable to register cuDNN factory\n",
             b"W0000 00:00:1796110624.000000    7470 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n",
             b"a real warning\n"]
    code = ("import os\nfrom digitune.models._quiet import filtered_stderr\nwith filtered_stderr():\n"
            + "".join(f"    os.write(2, {line!r})\n" for line in lines))
    shown = {}
    for level in ("2", "3"):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                env=_console_env(TF_CPP_MIN_LOG_LEVEL=level), timeout=120)
        assert result.returncode == 0, result.stderr
        shown[level] = result.stderr
    assert shown["3"] == "a real warning\n"
    assert shown["2"].splitlines()[0].startswith("E0000 ") and shown["2"].endswith("a real warning\n")
    assert "dlopen" not in shown["2"] and "oneDNN" not in shown["2"]
