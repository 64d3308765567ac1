"""Training Monkey-Net: the original losses, one training iteration (:mod:`.step`), the
:class:`Trainer` around it (schedule, mixed precision, several processes, resumable checkpoints),
and the reconstruction evaluation (:mod:`.reconstruction`)."""
from fastmotion.train.trainer import Trainer, TrainingError, TrainResult

__all__ = ["Trainer", "TrainingError", "TrainResult"]
