"""The Trial page: one trial's scores, curves, class report, model layers and its saved model (mistakes, predictions)."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from digitune.search import SAVED_ATTR  # noqa: E501

from digitune.dashboard._data import StudyData, family_of
from digitune.dashboard._reader import Reader
from digitune.dashboard._records import model_layers
from digitune.dashboard._model import (
    MAX_UPLOAD_BYTES,
    SavedModel,
    UploadError,
    load_saved_model,
    misclassified,
    predict_upload,
    submission_csv,
)
from digitune.dashboard._details import confusion_figure, per_class_figure, trial_curves_figure

from digitune.dashboard._views import chart, choose_study, fmt


# --------------------------------------------------------------------------- Trial


def trial_page(reader: Reader) -> None:
    data = choose_study(reader)
    if data is None:
        return
    if not data.records:
        st.title("Trial")
        st.info(f"Study {data.name} has no trials yet.")
        return
    numbers = [r["number"] for r in data.records]
    wanted = st.query_params.get("trial", "")
    if wanted.isdigit() and int(wanted) in numbers:
        default = int(wanted)
    else:
        default = data.best["number"] if data.best else (data.pareto_numbers or numbers)[-1]
    # Bound to ?trial=N by hand: a bound selectbox would put the whole label in the URL.
    number = st.selectbox("Trial", numbers, index=numbers.index(default), key=f"trial:{data.name}",
                          format_func=lambda n: _trial_label(data.record(n)))
    st.query_params["trial"] = str(number)
    record = data.record(number)
    st.title(f"Trial {number} of {data.name}")
    _scores(record, data)
    left, right = st.columns(2)
    with left:
        _parameters_and_run(record)
    with right:
        st.subheader("Model")
        _model_summary(record, data)
    chart(trial_curves_figure(record), key="trial_curves")
    st.subheader("Classes")
    if record["confusion_matrix"] and record["per_class_accuracy"]:
        left, right = st.columns(2)
        with left:
            chart(confusion_figure(record["confusion_matrix"]), key="confusion")
        with right:
            chart(per_class_figure(record["per_class_accuracy"]), key="per_class")
    else:
        st.info("Confusion matrix and per-class accuracy: not recorded for this trial "
                "(only complete trials of newer digitune versions have them).")
    _saved_model_section(reader, data, record)


def _scores(record: dict[str, Any], data: StudyData) -> None:
    """The trial's state, scores, family, size and epochs, and why it failed or is infeasible."""
    if record["baseline"]:
        st.caption(f"Tutorial baseline: {record['baseline']}")
    cols = st.columns(6)
    cols[0].metric("state", record["state"])
    values = record["values"] or []
    for i, metric in enumerate(data.metrics[:2]):
        cols[1 + i].metric(metric, fmt(values[i]) if i < len(values) else "–")
    cols[3].metric("family", family_of(record), help=f"tutorial baseline {record['baseline']}"
                   if record["baseline"] else None)
    cols[4].metric("parameters", fmt(record["params_count"]))
    cols[5].metric("epochs", record["epoch"])
    if record["fail_reason"]:
        st.error(f"Failed: {record['fail_reason']}")
    if not record["feasible"]:
        st.warning(f"Infeasible: constraints {record['constraints']} (a positive value is over the limit)")


def _parameters_and_run(record: dict[str, Any]) -> None:
    st.subheader("Parameters")
    params = [{"parameter": k, "value": _text(v)} for k, v in record["params"].items()]
    if record["train_config"]:
        params += [{"parameter": f"train.{k}", "value": _text(v)} for k, v in record["train_config"].items()]
    if params:
        st.dataframe(params, hide_index=True)
    else:
        st.info("No parameters recorded.")
    st.subheader("Run")
    details = {"started": record["datetime_start"], "completed": record["datetime_complete"],
               "duration (s)": record["duration_s"], "train seconds": record["train_seconds"],
               "Keras backend": record["keras_backend"], "device": record["device"],
               "latency (ms/image)": record["latency_ms"], "constraints": record["constraints"]}
    st.dataframe([{"field": k, "value": _text(v)} for k, v in details.items() if v is not None], hide_index=True)


@st.cache_resource(show_spinner="Loading the saved model…", max_entries=8)
def _saved_model(url: str, _storage: Any, study_name: str, number: int, artifact: str) -> SavedModel | None:
    return load_saved_model(url, _storage, study_name, number)


# Keyed by the artifact id; the leading underscore keeps Streamlit from hashing the model.
@st.cache_data(show_spinner=False, max_entries=32)
def _mistakes(artifact: str, _saved: SavedModel) -> list[dict[str, Any]]:
    return misclassified(_saved)


@st.cache_data(show_spinner=False, max_entries=32)
def _submission(artifact: str, _saved: SavedModel) -> str:
    return submission_csv(_saved)


def _saved_model_section(reader: Reader, data: StudyData, record: dict[str, Any]) -> None:
    st.subheader("Saved model")
    number = record["number"]
    artifact = (data.user_attrs.get(SAVED_ATTR) or {}).get(str(number))
    if artifact is None:
        st.info("No saved model for this trial: digitune keeps the models of a study's best `save_models` "
                "trials (export any trial's config with `digitune export-model`).")
        return
    saved = _saved_model(reader.url or "", reader.storage, data.name, number, artifact)
    if saved is None:
        st.info("This trial's model was saved, but its file is not in the artifact folder here.")
        return
    left, right = st.columns(2)
    left.download_button("Download the model (.keras)", saved.keras_bytes,
                         file_name=f"{data.name}-trial-{number}.keras", mime="application/octet-stream",
                         key="download_model")
    right.download_button("Download a submission CSV (held-out test images)",
                          _submission(artifact, saved),
                          file_name=f"{data.name}-trial-{number}-submission.csv", mime="text/csv",
                          key="download_submission")
    mistakes = _mistakes(artifact, saved)
    st.markdown(f"**Misclassified validation images** ({len(mistakes)} shown, most confident first)")
    if mistakes:
        columns = st.columns(8)
        for i, item in enumerate(mistakes):
            columns[i % 8].image(item["image"], caption=f"true {item['true']} → {item['predicted']} "
                                                        f"({item['probability']:.0%})")
    upload = st.file_uploader(f"Upload a digit (PNG, at most {MAX_UPLOAD_BYTES // 1024} KiB)", type=["png"],
                              key=f"upload:{data.name}:{number}")
    if upload is not None:
        try:
            probabilities = predict_upload(saved, upload.getvalue())
        except UploadError as exc:
            st.error(f"Cannot read that image: {exc}")
        else:
            label = int(probabilities.argmax())
            st.metric("prediction", label, help=f"probability {probabilities[label]:.1%}")
            st.bar_chart({"probability": [float(p) for p in probabilities]})


def _trial_label(record: dict[str, Any]) -> str:
    value = record["values"][0] if record["values"] else None
    tag = f" {record['baseline']}" if record["baseline"] else ""
    return f"#{record['number']} {record['state']} {fmt(value)} {family_of(record)}{tag}"


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else fmt(value, 6)


@st.cache_data(show_spinner="Building the model to list its layers…", max_entries=256)
def _layers(config_json: str, image_shape: tuple[int, ...]) -> dict[str, Any]:
    return model_layers(json.loads(config_json), image_shape)


def _model_summary(record: dict[str, Any], data: StudyData) -> None:
    if not record["model_config"]:
        st.info("No model config recorded for this trial.")
        return
    if not data.image_shape:
        st.info("The study does not record its image shape; cannot rebuild the model.")
        st.json(record["model_config"], expanded=False)
        return
    try:
        summary = _layers(json.dumps(record["model_config"], sort_keys=True), data.image_shape)
    except Exception as exc:  # noqa: BLE001 (a config this digitune cannot build: show it, not a traceback)
        st.warning(f"Cannot rebuild this model: {exc}")
        st.json(record["model_config"], expanded=False)
        return
    shape = "×".join(str(d) for d in summary["input_shape"])
    st.caption(f"{record['model_config'].get('family', '?').upper()} on {shape} images: "
               f"{summary['total_params']:,} parameters")
    st.dataframe(summary["layers"], hide_index=True)
