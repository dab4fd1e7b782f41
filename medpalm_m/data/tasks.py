"""Tasks: source (TFDS builder + split) + formatter + postprocessing + metrics, registered by name.

A formatter turns one record of its builder (plus, for few-shot tasks, exemplar records from the
train split) into an Example: `{id, task, images, prompt, target}` with optional `label` (the
option index of a classification target) and `variant_type` (genomics). Prompts mark image
slots with `<img>`; an exemplar's image is the literal text `\\<img>` (see
`tokenizer.escape_image_markers`), so it never becomes an image slot, as in the paper.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

Record = Mapping[str, Any]
Example = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  builder: type  # a tfds.core.DatasetBuilder subclass
  formatter: Callable[[Record, Sequence[Record]], Example]
  metrics: tuple[str, ...]
  options: tuple[str, ...] | None = None  # classification: every option, in prompt order
  num_exemplars: int = 0  # few-shot exemplars drawn from `exemplar_split` (text-only)
  splits: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"train": "train", "test": "test"})
  # Where exemplars come from: an evaluation-only task (no "train" split, so no mixture can train
  # on it) draws them from another of its splits, never the example itself.
  exemplar_split: str = "train"
  # A chain-of-thought variant: the answer is parsed from the reasoning's end
  # (`prompts.final_answer`) and its result always says how many answers did not parse.
  chain_of_thought: bool = False
  # The MultiMedBench task whose paper numbers sit beside ours in the benchmark table.
  paper_task: str | None = None
  postprocess: Callable[[str], str] = str.strip

  def option_targets(self) -> tuple[str, ...]:
    """Each option as a target, in the answer format the formatters give it ("Yes."): the texts
    whose likelihoods option scoring compares."""
    from medpalm_m.data import prompts  # prompts imports this module
    if self.options is None:
      raise ValueError(f"task {self.name!r} has no options")
    return tuple(prompts.answer(option) for option in self.options)

  def split_name(self, split: str) -> str:
    if split not in self.splits:
      raise ValueError(f"task {self.name!r} has no {split!r} split; it has {sorted(self.splits)}")
    return self.splits[split]


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
  if task.name in _TASKS and _TASKS[task.name] != task:
    raise ValueError(f"task {task.name!r} is registered twice")
  _TASKS[task.name] = task
  return task


def get(name: str) -> Task:
  _import_registries()
  if name not in _TASKS:
    raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(_TASKS))}")
  return _TASKS[name]


def all_tasks() -> dict[str, Task]:
  _import_registries()
  return dict(_TASKS)


def _import_registries() -> None:
  # Importing a family module registers its tasks; done lazily so `tasks` has no import cycle.
  from medpalm_m.data import builders, synthetic  # noqa: F401


def text(value: Any) -> str:
  """TFDS returns text features as bytes; formatters want str."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
