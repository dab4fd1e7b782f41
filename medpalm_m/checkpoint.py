"""Checkpoints with orbax: train state, data-iterator state and a description of the parameters.

orbax writes each step into a temporary directory and renames it only when complete, so a
half-written checkpoint (a kill during a save) is never listed, never restored. A checkpoint
whose parameters differ from the config's is refused with the names and shapes that differ.
No pickle anywhere.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import numpy as np
import orbax.checkpoint as ocp


class IncompatibleCheckpointError(ValueError):
  pass


def param_signature(params: dict[str, Any]) -> dict[str, list]:
  return {k: [list(v.shape), str(np.dtype(v.dtype))] for k, v in params.items()}


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 2, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: dict, data_iterator: Any | None, meta: dict, *,
           force: bool = False) -> None:
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def meta(self, step: int) -> dict:
    """The JSON saved beside step's state: parameter signature, tasks, mixture, ..."""
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, step: int, abstract_state: dict, data_iterator: Any | None,
              expected_params: dict[str, Any]) -> tuple[dict, dict]:
    """Restore into `abstract_state`'s shapes and shardings (and the iterator in place)."""
    meta = self.meta(step)
    check_compatible(meta["params"], param_signature(expected_params), self.directory, step)
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], meta

  def restore_params(self, step: int, abstract_params: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters of a saved state, nothing of its optimizer state: how a run starts from
    another run's (or an imported) checkpoint. Each array is read straight into the sharding its
    `abstract_params` entry carries (numpy arrays where it carries none)."""
    check_compatible(self.meta(step)["params"], param_signature(abstract_params), self.directory, step)
    target = {"params": abstract_params}
    with ocp.PyTreeCheckpointer() as checkpointer:
      restored = checkpointer.restore(
          os.path.join(self.directory, str(step), "state"),
          args=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                      restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
    return restored["params"]

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def check_compatible(saved: dict[str, list], expected: dict[str, list], directory: str, step: int):
  missing = sorted(set(expected) - set(saved))
  extra = sorted(set(saved) - set(expected))
  changed = {k: (saved[k], expected[k]) for k in sorted(set(saved) & set(expected))
             if saved[k] != expected[k]}
  if missing or extra or changed:
    lines = [f"checkpoint {directory} step {step} does not match the config's model:"]
    lines += [f"  {k}: checkpoint {a[0]} {a[1]}, config {b[0]} {b[1]}" for k, (a, b) in list(changed.items())[:20]]
    lines += [f"  only in the config: {k}" for k in missing[:20]]
    lines += [f"  only in the checkpoint: {k}" for k in extra[:20]]
    lines.append("use a fresh --workdir for a different model, or the config the checkpoint was "
                 "trained with (config.json in the workdir)")
    raise IncompatibleCheckpointError("\n".join(lines))
