"""How each medpalm_m parameter is made of a checkpoint's tensors, and back.

A `Rule` names one medpalm_m parameter, the Hugging Face tensors it is made of (usually one; the
ViT's fused query/key/value matrix takes three) with the shapes config.json implies, and the two
maps between them. The maps only transpose and reshape, so import then export is bit-exact.
A family (`paligemma`, `gemma3`) derives its rules from the model config it derived from
config.json; `check_tensors` compares them with the tensors a checkpoint really holds.

Rules use the Hub's tensor names ('language_model.model.*', 'vision_tower.vision_model.*',
'multi_modal_projector.*'). transformers 5 saves some parts under other prefixes
('model.language_model.*', 'vision_tower.*', 'lm_head.*'); `Layout` maps between the two, and
an export writes the names its import read.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

Shape = tuple[int, ...]

# The Hub's prefix of each part, then the other prefixes transformers versions save it under.
PREFIXES: dict[str, tuple[str, ...]] = {
    "text": ("language_model.model.", "model.language_model.", "language_model."),
    "lm_head": ("language_model.lm_head.", "lm_head."),
    "vision": ("vision_tower.vision_model.", "model.vision_tower.vision_model.",
               "model.vision_tower.", "vision_tower."),
    "projector": ("multi_modal_projector.", "model.multi_modal_projector."),
}
LM_HEAD = PREFIXES["lm_head"][0] + "weight"
EMBEDDING = PREFIXES["text"][0] + "embed_tokens.weight"


class CheckpointMismatchError(ValueError):
  """A checkpoint's tensors disagree with its config.json (missing, unexpected, wrong shape)."""


@dataclasses.dataclass(frozen=True)
class Rule:
  ours: str
  hf: tuple[str, ...]
  hf_shapes: tuple[Shape, ...]
  to_ours: Callable[..., np.ndarray]
  to_hf: Callable[[np.ndarray], tuple[np.ndarray, ...]]


def copy(ours: str, hf: str, shape: Shape) -> Rule:
  return Rule(ours, (hf,), (tuple(shape),), lambda w: w, lambda x: (x,))


def transpose(ours: str, hf: str, hf_shape: Shape, ours_shape: Shape) -> Rule:
  """A torch Linear weight [out, in] as our [in, ...out split into axes]."""
  out_dim, in_dim = hf_shape
  return Rule(ours, (hf,), (tuple(hf_shape),),
              lambda w: w.T.reshape(ours_shape),
              lambda x: (x.reshape(in_dim, out_dim).T,))


@dataclasses.dataclass(frozen=True)
class Layout:
  """The prefix each part of the model has in a checkpoint's files."""

  prefixes: dict[str, str]

  @classmethod
  def detect(cls, names: Iterable[str], where: str) -> tuple["Layout", dict[str, str], list[str]]:
    """(layout, {Hub name: name in the files}, names that belong to no known part)."""
    candidates = sorted(((p, part) for part, ps in PREFIXES.items() for p in ps),
                        key=lambda item: -len(item[0]))  # the longest prefix wins
    used: dict[str, set[str]] = {}
    hub_names, unknown = {}, []
    for name in names:
      match = next(((p, part) for p, part in candidates if name.startswith(p)), None)
      if match is None:
        unknown.append(name)
        continue
      prefix, part = match
      used.setdefault(part, set()).add(prefix)
      hub_names[PREFIXES[part][0] + name[len(prefix):]] = name
    mixed = {part: sorted(ps) for part, ps in used.items() if len(ps) > 1}
    if mixed:
      raise CheckpointMismatchError(f"{where}: tensor names mix prefixes {mixed}; save the "
                                    "checkpoint with one transformers version")
    prefixes = {part: PREFIXES[part][0] for part in PREFIXES}
    prefixes.update({part: ps.pop() for part, ps in used.items()})
    return cls(prefixes), hub_names, unknown

  def file_name(self, hub_name: str) -> str:
    for part, ps in PREFIXES.items():
      if hub_name.startswith(ps[0]):
        return self.prefixes[part] + hub_name[len(ps[0]):]
    raise KeyError(hub_name)


def check_tensors(rules: Sequence[Rule], shapes: Mapping[str, Shape], layout: Layout,
                  unknown: Sequence[str], where: str) -> None:
  """Refuse a checkpoint whose tensors are not exactly those the rules expect, naming each."""
  expected = {name: shape for rule in rules for name, shape in zip(rule.hf, rule.hf_shapes)}
  missing = [f"  missing: {layout.file_name(n)} (config.json implies {list(s)})"
             for n, s in expected.items() if n not in shapes]
  extra = [f"  unexpected: {layout.file_name(n)} {list(s)}" for n, s in shapes.items() if n not in expected]
  extra += [f"  unexpected: {n}" for n in unknown]
  wrong = [f"  wrong shape: {layout.file_name(n)} is {list(shapes[n])}, config.json implies {list(s)}"
           for n, s in expected.items() if n in shapes and tuple(shapes[n]) != tuple(s)]
  problems = missing + extra + wrong
  if problems:
    header = (f"{where}: the tensors do not match config.json ({len(missing)} missing, "
              f"{len(extra)} unexpected, {len(wrong)} with the wrong shape):")
    more = [f"  ... and {len(problems) - 30} more"] if len(problems) > 30 else []
    advice = ("check that config.json belongs to these weights (num_hidden_layers, hidden_size, "
              "head_dim, intermediate_size, vocab_size, image_size, patch_size, ...)")
    raise CheckpointMismatchError("\n".join([header, *problems[:30], *more, advice]))
