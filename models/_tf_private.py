"""TensorFlow's private names that digitune relies on, behind one module (the boundary with TensorFlow).

``REQUIRED`` lists them; tests/search/test_boundaries.py fails with this module's name when a new
TensorFlow moves one. Every function falls back to doing nothing where the name is gone.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras

REQUIRED = (("tensorflow.python.framework.ops", "_gradient_registry._registry"),)


def _gradient_registry() -> dict | None:
    """TensorFlow's global registry of gradient functions, or None on other backends (or if it moved)."""
    if keras.backend.backend() != "tensorflow":
        return None
    try:
        from tensorflow.python.framework import ops
    except ImportError:
        return None
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


@contextlib.contextmanager
def forget_traced_gradients() -> Iterator[None]:
    """Drop the gradient functions TensorFlow registered while tracing this model's training step.

    Keras' TensorFlow optimizer sums gradients across replicas with ``all_reduce``, which
    in a traced function defines a ``tf.custom_gradient``; TensorFlow registers every one
    under a new name (``CustomGradient-N``) in a global registry that nothing ever empties.
    Its closure holds the traced graph, so every trained model left its whole training step
    (~2,700 Python objects, ~1.9 MiB) alive until the process ended. Those functions are only
    read while a gradient is being traced, so once ``fit`` returns they can go. digitune's
    fused optimizers (``_fused``) skip that sum, so this now guards Keras' own update path
    (taken under a ``tf.distribute`` strategy, or for settings no kernel matches).
    """
    registry = _gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [n for n in registry if n not in before and n.startswith("CustomGradient-")]:
                registry.pop(name, None)
