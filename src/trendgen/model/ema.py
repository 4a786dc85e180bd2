"""EMA of the weights during training (`model.ema`): Lightning's callback, safe on interruption."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging

__all__ = ["InterruptSafeEMA"]


class InterruptSafeEMA(EMAWeightAveraging):
    """Lightning's EMA callback, which also leaves the EMA weights in the module when fit is interrupted
    (Ctrl-C, `SystemExit`), so the last weights exported then are the EMA's, as after a completed fit."""

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._average_model is not None and isinstance(exception, KeyboardInterrupt | SystemExit):
            self._copy_average_to_current(pl_module)
