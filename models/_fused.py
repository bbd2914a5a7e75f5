"""Keras' Adam, SGD and RMSprop with one fused TensorFlow kernel per variable update.

Why it is built this way: docs/internals.md, "models/_fused.py".
"""

from __future__ import annotations

import keras

# The boundary with Keras' optimizer internals: every private name the subclasses below use.
REQUIRED = tuple(("keras.optimizers", f"{cls}.{name}") for cls in ("Adam", "SGD", "RMSprop")
                 for name in ("_backend_update_step", "_apply_weight_decay", "_use_weight_decay",
                              "_get_variable_index"))


def _tf():
    import tensorflow as tf

    return tf


def _can_fuse(optimizer: keras.optimizers.Optimizer) -> bool:
    if keras.backend.backend() != "tensorflow" or getattr(optimizer, "use_ema", False):
        return False
    return not _tf().distribute.has_strategy()


def _handle(variable):
    """The resource handle of a Keras (or plain TensorFlow) variable."""
    return getattr(variable, "value", variable).handle


class _Scalars:
    """An update's scalar inputs in a variable's dtype, cast once per dtype rather than once per variable."""

    def __init__(self, **values):
        self._values = values
        self._by_dtype: dict = {}

    def __call__(self, dtype) -> dict:
        if dtype not in self._by_dtype:
            tf = _tf()
            self._by_dtype[dtype] = {name: tf.cast(value, dtype) for name, value in self._values.items()}
        return self._by_dtype[dtype]


class _DecayOnce:
    """Decoupled weight decay with the learning rate read once per step, not once per variable.

    Keras' TensorFlow optimizer evaluates ``self.learning_rate`` (a whole schedule, when
    there is one) and a distribution-strategy update for every variable it decays, which
    tripled the tracing cost of a small model's first epoch. Same arithmetic:
    ``variable -= variable * weight_decay * learning_rate``.
    """

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not _can_fuse(self):
            return super()._apply_weight_decay(variables)
        tf = _tf()
        scale = _Scalars(rate=tf.cast(self.learning_rate, tf.float32) * self.weight_decay)
        for variable in variables:
            if self._use_weight_decay(variable):
                value = getattr(variable, "value", variable)
                value.assign_sub(value * scale(value.dtype)["rate"])


@keras.saving.register_keras_serializable(package="digitune")
class FusedAdam(_DecayOnce, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose TensorFlow update is one ``ResourceApplyAdam`` per variable."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if self.amsgrad or not _can_fuse(self):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        tf = _tf()
        step = tf.cast(self.iterations + 1, tf.float32)
        scalars = _Scalars(beta1_power=tf.pow(tf.constant(self.beta_1, tf.float32), step),
                           beta2_power=tf.pow(tf.constant(self.beta_2, tf.float32), step),
                           lr=learning_rate, beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon)
        for gradient, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
                grad=tf.cast(gradient, variable.dtype), **scalars(variable.dtype),
            )


@keras.saving.register_keras_serializable(package="digitune")
class FusedSGD(_DecayOnce, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with momentum whose TensorFlow update is one ``ResourceApplyKerasMomentum``."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if self.nesterov or not self.momentum or not _can_fuse(self):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        tf = _tf()
        scalars = _Scalars(lr=learning_rate, momentum=self.momentum)
        for gradient, variable in zip(grads, trainable_variables):
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=_handle(variable), accum=_handle(self.momentums[self._get_variable_index(variable)]),
                grad=tf.cast(gradient, variable.dtype), use_nesterov=False, **scalars(variable.dtype),
            )


@keras.saving.register_keras_serializable(package="digitune")
class FusedRMSprop(_DecayOnce, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` (uncentered) whose TensorFlow update is one ``ResourceApplyRMSProp``.

    The kernel always keeps a momentum slot; with ``momentum=0`` it holds the last step's
    increment and is multiplied by zero at the next, which leaves Keras' arithmetic.
    """

    def build(self, var_list):
        super().build(var_list)
        if self.momentum == 0 and not self.centered:
            self._fused_increments = self.add_optimizer_variables(var_list, "fused_increment")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if self.centered or not _can_fuse(self):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        tf = _tf()
        scalars = _Scalars(lr=learning_rate, rho=self.rho, momentum=self.momentum, epsilon=self.epsilon)
        for gradient, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            momentum = self._momentums[index] if self.momentum > 0 else self._fused_increments[index]
            tf.raw_ops.ResourceApplyRMSProp(
                var=_handle(variable), ms=_handle(self._velocities[index]), mom=_handle(momentum),
                grad=tf.cast(gradient, variable.dtype), **scalars(variable.dtype),
            )


_KERAS_CLASS = {FusedAdam: keras.optimizers.Adam, FusedSGD: keras.optimizers.SGD,
                FusedRMSprop: keras.optimizers.RMSprop}  # the Keras optimizer each extends


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """digitune's optimizer ``name`` ('adam', 'sgd' with momentum 0.9, 'rmsprop'); fused on TensorFlow.

    ``learning_rate`` is a number or a Keras schedule; ``weight_decay`` is Keras' decoupled
    decay (Adam with it is AdamW), left off at 0.
    """
    fused = keras.backend.backend() == "tensorflow"
    options = {"learning_rate": learning_rate, "weight_decay": weight_decay or None}
    if name == "adam":
        return (FusedAdam if fused else keras.optimizers.Adam)(**options)
    if name == "sgd":
        return (FusedSGD if fused else keras.optimizers.SGD)(momentum=0.9, **options)
    return (FusedRMSprop if fused else keras.optimizers.RMSprop)(**options)


def standard_optimizer(optimizer: keras.optimizers.Optimizer, var_list) -> keras.optimizers.Optimizer:
    """Keras' own optimizer that ``optimizer`` extends, with its settings, built for ``var_list``.

    Once ``optimizer`` is built its state comes along, variable by variable where the paths
    match (``fused_adam/dense_kernel_momentum`` to ``adam/dense_kernel_momentum``); FusedRMSprop's
    ``fused_increment`` slots have no counterpart (Keras' update does not need them). An
    optimizer that is not digitune's is returned as is.
    """
    base = _KERAS_CLASS.get(type(optimizer))
    if base is None:
        return optimizer
    standard = base.from_config({k: v for k, v in optimizer.get_config().items() if k != "name"})
    standard.build(var_list)
    if optimizer.built:
        state = {v.path.split("/", 1)[-1]: v for v in optimizer.variables}
        for variable in standard.variables:
            source = state.get(variable.path.split("/", 1)[-1])
            if source is not None and tuple(source.shape) == tuple(variable.shape):
                variable.assign(source)
    return standard
