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

    Why it is built this way: docs/internals.md, "models/_tf_private.py forget_traced_gradients".
    """
    registry = _gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [n for n in registry if n not in before and n.startswith("CustomGradient-")]:
                registry.pop(name, None)
