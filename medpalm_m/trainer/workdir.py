"""The workdir contract of a run that is going to run, and only of such a run.

A run first validates (config, data, checkpoint) and writes nothing; then `start()` records it:
config.json (the config `generate` and `evaluate` read), one line of config_history.jsonl per
start ({"step", "config"}), and metrics.jsonl cut back to the restored step, so that the steps
logged after the last checkpoint of a killed run appear once, not twice.

A resume with a config that differs from config.json is refused, naming the keys, except for
keys that change only the bookkeeping (BOOKKEEPING) and those the user allows with
`--config.train.allow_config_changes=KEY,PATTERN,...` (fnmatch patterns of dotted keys).
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Any, Iterator, Mapping

import jax
import ml_collections

from medpalm_m.runtime import load_config

CONFIG = "config.json"
HISTORY = "config_history.jsonl"
METRICS = "metrics.jsonl"

# Keys that say how long to run, how often to log, save and evaluate, and where the data lives:
# a resume may change them without changing what is trained.
BOOKKEEPING = ("train.num_steps", "train.log_every", "train.checkpoint_every",
               "train.keep_checkpoints", "train.eval_every", "train.allow_config_changes", "eval.*",
               "data.data_dir", "data.num_workers", "data.build_synthetic", "init_from", "topology")


# Keys that shape the saved optimizer state, which a resume restores as it was: a change is
# refused even when allowed. Frozen parameters have no optimizer state (trainer.optimizer).
STATE_SHAPING = ("optimizer.freeze",)


class ConfigChangedError(ValueError):
  pass


def flat(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
  """(dotted key, leaf value) of a nested config as JSON (tuples become lists)."""
  for key, value in tree.items():
    if isinstance(value, Mapping) and value:
      yield from flat(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def as_json(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(cfg.to_json_best_effort())


def check_config_unchanged(workdir: str, cfg: ml_collections.ConfigDict, step: int) -> None:
  """Refuse a resume whose config differs from the workdir's config.json beyond what is allowed."""
  if not os.path.exists(os.path.join(workdir, CONFIG)):
    return
  saved = dict(flat(as_json(load_config(workdir))))
  new = dict(flat(as_json(cfg)))
  allowed = BOOKKEEPING + tuple(p.strip() for p in cfg.train.allow_config_changes.split(",") if p.strip())
  changed = sorted(k for k in set(saved) | set(new)
                   if saved.get(k) != new.get(k) and not any(fnmatch.fnmatchcase(k, p) for p in allowed))
  fixed = [k for k in STATE_SHAPING if saved.get(k) != new.get(k)]
  if fixed:
    raise ConfigChangedError(
        f"{fixed[0]} is {new.get(fixed[0])!r}, but checkpoint step {step} in {workdir} was trained "
        f"with {saved.get(fixed[0])!r}, and its optimizer state holds the parameters that trained "
        f"then; to continue from its parameters, start a fresh --workdir with --config.init_from={workdir}")
  if changed:
    lines = [f"the config differs from {os.path.join(workdir, CONFIG)}, which checkpoint step {step} "
             "was trained with:"]
    lines += [f"  {k}: workdir {saved.get(k, '(absent)')!r}, now {new.get(k, '(absent)')!r}"
              for k in changed[:20]]
    lines.append(f"resume with the workdir's config, use a fresh --workdir, or allow the change with "
                 f"--config.train.allow_config_changes={','.join(changed[:3])}")
    raise ConfigChangedError("\n".join(lines))


def start(workdir: str, cfg: ml_collections.ConfigDict, step: int) -> None:
  """Record a run that starts (or resumes) at `step`: config.json, its history, metrics cut back.
  Process 0 writes; the others share its filesystem."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  text = cfg.to_json_best_effort(indent=2, sort_keys=True)
  _replace(os.path.join(workdir, CONFIG), text)
  with open(os.path.join(workdir, HISTORY), "a") as f:
    f.write(json.dumps({"step": step, "config": json.loads(text)}, sort_keys=True) + "\n")
  cut_metrics(os.path.join(workdir, METRICS), step)


def cut_metrics(path: str, step: int) -> None:
  """Keep the records of steps <= `step`: the later ones are about to be logged again."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines if line.strip() and _step_of(line) <= step]
  if len(kept) != len(lines):
    _replace(path, "".join(kept))


def _step_of(line: str) -> int:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return 1 << 62  # a torn last line of a killed run: dropped


def _replace(path: str, text: str) -> None:
  """Write `path` whole or not at all (a kill mid-write leaves the old file)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
