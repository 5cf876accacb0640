"""The training loss and the per-parameter metric, registered with Keras under the names models record.

Both are registered as ``"mrfbook>rmse_loss"`` and ``"mrfbook>ParameterRMSE"``. The model files
under ``models/`` record these registered names in their compile config (next to the module the
class lived in when they were saved, ``mrfbook.training`` for the older ones); Keras resolves a
custom object by its registered name first, so :data:`CUSTOM_OBJECTS`, passed to
``keras.saving.load_model`` by :func:`mrfbook.nn.model.load_trained_model`, is all a
``compile=True`` load needs, whatever module path the file recorded.

Explained in chapter 7, book/07_training.md.
"""

from __future__ import annotations

from keras import ops

from mrfbook.nn.backend import keras

__all__ = ["rmse_loss", "ParameterRMSE", "CUSTOM_OBJECTS"]


@keras.saving.register_keras_serializable(package="mrfbook")
def rmse_loss(y_true, y_pred):
    """Root-mean-square error over the batch and all outputs (the paper's loss)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sqrt(ops.mean(ops.square(y_pred - y_true)) + 1e-12)


@keras.saving.register_keras_serializable(package="mrfbook")
class ParameterRMSE(keras.metrics.Metric):
    """RMSE of one output column in ms, accumulated exactly over an epoch."""

    def __init__(self, index: int = 0, scale: float = 1.0, name: str = "rmse_ms", **kwargs):
        super().__init__(name=name, **kwargs)
        self.index = int(index)
        self.scale = float(scale)
        self.sse = self.add_variable(shape=(), initializer="zeros", name="sse")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add one batch's squared errors of column ``index`` (scaled to ms) and its row count."""
        d = (ops.cast(y_pred[:, self.index], "float32") - ops.cast(y_true[:, self.index], "float32")) * self.scale
        self.sse.assign(self.sse + ops.sum(ops.square(d)))
        self.count.assign(self.count + ops.cast(ops.shape(d)[0], "float32"))

    def result(self):
        """RMSE in ms over every row seen since the last reset (0 before the first batch)."""
        return ops.sqrt(self.sse / ops.maximum(self.count, 1.0))

    def reset_state(self):
        """Forget the accumulated sums (Keras calls it at the start of every epoch)."""
        self.sse.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        """Keras config: the base metric's plus ``index`` and ``scale``."""
        return {**super().get_config(), "index": self.index, "scale": self.scale}


#: Registered name -> object, for ``keras.saving.load_model(..., custom_objects=CUSTOM_OBJECTS)``.
CUSTOM_OBJECTS = {
    keras.saving.get_registered_name(rmse_loss): rmse_loss,
    keras.saving.get_registered_name(ParameterRMSE): ParameterRMSE,
}
