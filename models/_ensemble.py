"""An ensemble of classifiers as one Keras model: the mean of their class probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def average_model(members: Sequence[keras.Model], *, name: str = "ensemble") -> keras.Model:
    """A functional model that applies every model of ``members`` to one input and averages their outputs.

    The members (at least two, all taking the same input shape and giving the same number of
    classes) are copied uncompiled with their weights (the models passed in are left as they
    are), each named ``member_<i>`` so that two models of one family can sit side by side. The
    result is compiled for ``evaluate`` (sparse categorical cross-entropy, accuracy; plain SGD,
    which has no state to save) and is built only of Keras' own classes, so plain
    ``keras.models.load_model`` loads it.
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"average_model: expected at least two member models. Received: {len(members)} members")
    input_shape = tuple(members[0].input_shape[1:])
    output_shape = tuple(members[0].output_shape[1:])
    for i, member in enumerate(members):
        if tuple(member.input_shape[1:]) != input_shape or tuple(member.output_shape[1:]) != output_shape:
            raise ValueError(f"average_model: every member must map inputs of shape {input_shape} to outputs of "
                             f"shape {output_shape}. Received: member {i} maps {tuple(member.input_shape[1:])} "
                             f"to {tuple(member.output_shape[1:])}")
    inputs = keras.Input(shape=input_shape, name="image")
    copies = [_uncompiled_copy(member, f"member_{i}") for i, member in enumerate(members)]
    outputs = keras.layers.Average(name="probabilities", dtype="float32")([m(inputs) for m in copies])
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _uncompiled_copy(model: keras.Model, name: str) -> keras.Model:
    """``model``'s layers and weights without its optimizer: a digitune optimizer must not reach the file."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.name = name
    return copy
