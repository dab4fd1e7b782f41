"""Training on top of the runtime: the optimizer, the train state and its jitted step, the loop."""

from medpalm_m.trainer.divergence import DivergenceError
from medpalm_m.trainer.loop import train
from medpalm_m.trainer.state import Trainer

__all__ = ["DivergenceError", "Trainer", "train"]
