"""Task mixtures: `{task: weight}` from a config, or examples-proportional with a cap and temperature."""

from __future__ import annotations

import difflib
import math
from typing import Mapping

from medpalm_m.data import tasks


def normalize(weights: Mapping[str, float], *, where: str = "config.data.mixture") -> dict[str, float]:
  """Validate a `{task: weight}` mixture and scale it to sum to 1."""
  if not weights:
    raise ValueError(f"{where} is empty; give at least one {{task: weight}}")
  known = tasks.all_tasks()
  unknown = [t for t in weights if t not in known]
  if unknown:
    guesses = {t: difflib.get_close_matches(t, list(known), n=1) for t in unknown}
    named = ", ".join(f"{t!r} (did you mean {g[0]!r}?)" if g else repr(t) for t, g in guesses.items())
    raise ValueError(f"{where}: unknown task(s) {named}; `python -m medpalm_m.data list` lists "
                     "the registered tasks")
  bad = {t: w for t, w in weights.items() if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0)}
  if bad:
    raise ValueError(f"{where}: weights must be finite and >= 0, got {bad}")
  total = float(sum(weights.values()))
  if total <= 0:
    raise ValueError(f"{where}: all weights are zero; at least one task needs a positive weight")
  return {t: float(w) / total for t, w in weights.items() if w > 0}


def examples_proportional(sizes: Mapping[str, int], *, cap: int | None = None,
                          temperature: float = 1.0) -> dict[str, float]:
  """T5's examples-proportional mixing: weight ∝ min(size, cap) ** (1 / temperature)."""
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  rates = {t: (min(n, cap) if cap else n) ** (1.0 / temperature) for t, n in sizes.items()}
  return normalize(rates, where="examples-proportional mixture")
