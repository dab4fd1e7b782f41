"""Evaluation suites: which tasks an evaluation covers, how it decodes and where its report goes.

Without a suite an evaluation covers the training mixture's tasks on config.eval.split and writes
eval/step_N.json (the default run's report). A named suite of `config.evals` (configs/base.py
`eval_suite`) covers its own tasks, trained on or not, and writes eval/<name>/step_N.json, so two
suites' reports of one step never overwrite each other or the default one.
"""

from __future__ import annotations

import dataclasses
import os

from medpalm_m.data import preprocess


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str | None  # None: the training mixture's evaluation
  tasks: tuple[str, ...]
  split: str
  every: int  # training steps between evaluations; 0: only when asked
  max_decode_tokens: int
  max_images: int

  def sequence_spec(self, spec: preprocess.SequenceSpec) -> preprocess.SequenceSpec:
    """The training layout with this suite's image slots: each image beyond the training
    layout's adds its slots to the prompt budget, so the text keeps the room it trained with and
    a two-image prompt is neither cut nor dropped where a one-image prompt was not."""
    extra = max(0, self.max_images - spec.max_images)
    return dataclasses.replace(spec, max_images=spec.max_images + extra,
                               max_prompt_tokens=spec.max_prompt_tokens + extra * spec.image_slots)

  def report_path(self, workdir: str, step: int, split: str) -> str:
    """eval/[<suite>/]step_N.json; another split than the suite's goes beside it
    (step_N_<split>.json), so that neither overwrites the other."""
    suffix = "" if split == self.split else f"_{split}"
    return os.path.join(self.directory(workdir), f"step_{step}{suffix}.json")

  def directory(self, workdir: str) -> str:
    return os.path.join(workdir, "eval", *([self.name] if self.name else []))


def mixture_suite(cfg) -> Suite:
  """The default evaluation: the training mixture's tasks, as configured by config.eval."""
  return Suite(name=None, tasks=tuple(sorted(cfg.data.mixture)), split=cfg.eval.split,
               every=cfg.train.eval_every, max_decode_tokens=cfg.eval.max_decode_tokens,
               max_images=cfg.data.max_images)


def named_suite(cfg, name: str) -> Suite:
  if name not in cfg.evals:
    known = ", ".join(sorted(cfg.evals)) or "none"
    raise KeyError(f"no evaluation suite {name!r} in config.evals (this config has: {known}); "
                   "add one with configs/base.py's eval_suite")
  entry = cfg.evals[name]
  return Suite(name=name, tasks=tuple(entry.tasks), split=entry.split, every=entry.every,
               max_decode_tokens=entry.max_decode_tokens, max_images=entry.max_images)


def due(cfg, step: int) -> list[Suite]:
  """The named suites whose cadence falls on this training step."""
  suites = [named_suite(cfg, name) for name in sorted(cfg.evals)]
  return [s for s in suites if s.every and step % s.every == 0]
