"""Checkpoints with orbax: train state, data-iterator state and a description of the parameters.

orbax writes each step into a temporary directory and renames it only when complete, so a
half-written checkpoint (a kill during a save) is never listed, never restored. A checkpoint
whose parameters differ from the config's is refused with the names and shapes that differ.
A save that cannot be written (permissions, a read-only or full disk) raises CheckpointSaveError
naming the directory and the OS error, at once rather than after orbax's 300 s barrier; the
temporary folders a failed save leaves are removed when the directory is next opened for writing.
No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import logging as std_logging
import os
import re
import shutil
import sys
from typing import Any, Collection, Iterator

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


class IncompatibleCheckpointError(ValueError):
  pass


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written; the previous committed one is untouched."""


def check_writable(directory: str) -> None:
  """Raise PermissionError naming `directory` (or its nearest existing parent, where it does not
  exist yet) unless a file can be created there. A real file, not os.access: root passes
  os.access everywhere, and a read-only mount fails only on an actual write."""
  probe_dir = os.path.abspath(directory)
  while not os.path.isdir(probe_dir):
    if os.path.exists(probe_dir):
      raise NotADirectoryError(f"{probe_dir} exists and is not a directory")
    probe_dir = os.path.dirname(probe_dir)
  probe = os.path.join(probe_dir, f".medpalm_m_write_probe_{os.getpid()}")
  try:
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise PermissionError(f"cannot write to {probe_dir}: {e.strerror or e}; choose a writable "
                          "--workdir or fix the folder's permissions") from e


@contextlib.contextmanager
def _absl_level(level: int | None) -> Iterator[None]:
  """absl's logging at `level` inside (None: unchanged): orbax warns about what it was told to do."""
  if level is None:
    yield
    return
  previous = logging.get_verbosity()
  logging.set_verbosity(min(level, previous))  # absl: lower is quieter (ERROR -2, WARNING -1)
  try:
    yield
  finally:
    logging.set_verbosity(previous)


# What a checkpoint writes beyond its arrays' bytes: orbax's metadata (sharding, array metadata,
# manifests: 0.2 MB for tests/small_config.py's 1.1 MB state, growing with the number of arrays)
# and the data iterator's state.
_OVERHEAD_FACTOR, _OVERHEAD_BYTES = 1.05, 256 * 2**10


def check_room(directory: str, state_bytes: int) -> None:
  """Raise OSError(ENOSPC) when the disk cannot hold one more checkpoint of `state_bytes`: the
  old ones are deleted only after the new one is committed. orbax would find out in its writer
  threads, and print a traceback for each of their pending callbacks."""
  free = shutil.disk_usage(directory).free
  needed = int(state_bytes * _OVERHEAD_FACTOR) + _OVERHEAD_BYTES
  if free < needed:
    raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: a checkpoint needs about "
                  f"{needed / 2**20:.1f} MiB and {free / 2**20:.1f} MiB are free", directory)


def _os_failure(error: BaseException) -> tuple[str, str] | None:
  """(OS error, path) behind an orbax save error, which wraps it in its own errors, in thread
  failures, or in tensorstore's ValueError("... [os_error_code='28']"); None for another error."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and not isinstance(error, TimeoutError):
      return str(error.strerror or error), str(error.filename or "")
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
      path = re.search(r'Failed (?:writing|to write)[^"]*"([^"]+)"', str(error))
      return os.strerror(int(code.group(1))), path.group(1) if path else ""
    error = error.__cause__ or error.__context__
  return None


class _DropOrbaxErrors(std_logging.Filter):
  """orbax logs a failed save's traceback from each of its threads (a full disk: hundreds of
  lines); the save's CheckpointSaveError says it once, so its ERROR records are dropped."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.levelno >= std_logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


_DROP_ORBAX_ERRORS = _DropOrbaxErrors()


def _is_late_write_callback(unraisable) -> bool:
  """A tensorstore write finishing after the async save that awaited it failed (a disk that fills
  during the write) hands its result to that save's event loop, closed by then, and tensorstore
  reports the RuntimeError as unraisable, once per pending write: hundreds of tracebacks. The
  result is no longer wanted, and the save's own error says what happened."""
  tb = unraisable.exc_traceback
  if unraisable.exc_type is not RuntimeError or str(unraisable.exc_value) != "Event loop is closed" \
      or tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  return tb.tb_frame.f_code.co_name == "_check_closed"


def _install_late_callback_filter() -> None:
  previous = sys.unraisablehook
  if getattr(previous, "drops_late_write_callbacks", False):
    return

  def unraisablehook(unraisable):
    if not _is_late_write_callback(unraisable):
      previous(unraisable)

  unraisablehook.drops_late_write_callbacks = True
  sys.unraisablehook = unraisablehook


def param_signature(params: dict[str, Any]) -> dict[str, list]:
  return {k: [list(v.shape), str(np.dtype(v.dtype))] for k, v in params.items()}


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 2, async_save: bool = True,
               read_only: bool = False):
    """`read_only`: look at the checkpoints without creating or cleaning anything (how a run
    validates a workdir before it writes there)."""
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    self.saving_step: int | None = None  # the step of the save in flight (async)
    if read_only:
      options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0,
                                             max_to_keep=None, save_root_metadata=False)
    else:
      logging.get_absl_logger().addFilter(_DROP_ORBAX_ERRORS)
      _install_late_callback_filter()
      options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             cleanup_tmp_directories=True,
                                             enable_async_checkpointing=async_save)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler()}
    with _absl_level(logging.ERROR if read_only else None):  # read-only is what we asked for
      self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: dict, data_iterator: Any | None, meta: dict, *,
           force: bool = False) -> None:
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.saving_step = step
    try:
      # orbax creates the step's folder in a background thread and waits for it in a barrier
      # that times out after 300 s: an unwritable directory must fail here, in milliseconds.
      check_writable(self.directory)
      # orbax waits for the previous async save before it starts this one anyway; waiting here
      # first lets the free space below count what that save wrote.
      self.manager.wait_until_finished()
      self.manager.check_for_errors()  # the previous async save's failure (a full disk)
      check_room(self.directory, sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)))
      self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    except Exception as e:  # noqa: BLE001: turned into one error naming the path and OS error
      raise self._save_error(step, e) from e

  def _save_error(self, step: int | None, error: BaseException) -> BaseException:
    failure = _os_failure(error)
    if failure is None:
      return error
    reason, path = failure
    latest = self.manager.latest_step()
    kept = f"the last committed checkpoint (step {latest}) is intact" if latest is not None else \
        "no checkpoint has been committed"
    return CheckpointSaveError(
        f"cannot save checkpoint step {step} in {self.directory}: {reason}"
        f"{f' ({path})' if path else ''}; {kept}. Free space or fix the folder's permissions "
        "and rerun the same command to resume")

  def meta(self, step: int) -> dict:
    """The JSON saved beside step's state: parameter signature, tasks, mixture, ..."""
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def wait(self) -> None:
    """Block until the last save is committed; CheckpointSaveError if it failed."""
    try:
      self.manager.wait_until_finished()
      self.manager.check_for_errors()
    except Exception as e:  # noqa: BLE001
      raise self._save_error(self.saving_step, e) from e

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

  def restore_params(self, step: int, abstract_params: dict[str, Any], *,
                     left_out: Collection[str] = ()) -> dict[str, Any]:
    """Only the parameters of a saved state, nothing of its optimizer state: how a run starts from
    another run's (or an imported) checkpoint. Each array is read straight into the sharding its
    `abstract_params` entry carries (numpy arrays where it carries none). Names in `left_out` are
    not asked for and need not be in the checkpoint (parameters a new run initialises itself)."""
    saved = {k: v for k, v in self.meta(step)["params"].items() if k not in left_out}
    check_compatible(saved, param_signature(abstract_params), self.directory, step)
    target = {"params": abstract_params}
    with ocp.PyTreeCheckpointer() as checkpointer:
      restored = checkpointer.restore(
          os.path.join(self.directory, str(step), "state"),
          args=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                      restore_args=ocp.checkpoint_utils.construct_restore_args(target)))
    return restored["params"]

  def close(self) -> None:
    """Commit the last save and release the manager. After a failed save (CheckpointSaveError)
    the manager is left as it is: closing it under tensorstore's pending callbacks prints one
    'Event loop is closed' traceback per callback."""
    if not self.read_only:
      self.wait()
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
