"""Training on top of the runtime: the optimizer, the train state and its jitted step, the loop."""

from medpalm_m.trainer.loop import NonFiniteLossError, train
from medpalm_m.trainer.state import Trainer

__all__ = ["NonFiniteLossError", "Trainer", "train"]
