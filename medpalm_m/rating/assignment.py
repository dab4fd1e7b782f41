"""Who rates what, and in which order each rater sees a case's reports.

The paper ran two designs over the same cases (Med-PaLM M §6.3): side-by-side ranking with one
rater per case, and independent error annotation with every rater on every case. A `Plan` says
how many raters rank and annotate each case; `overlap` sends a seeded share of the cases to every
rater for ranking, so inter-rater agreement can be measured where the ranking otherwise has one
rater per case. A rater's ranking and annotation of the same case are one page.

Report order is a seeded random permutation per (rater, case), fixed when the assignment is
made, so a revisit shows the same order and the letters A, B, C, ... tell a rater nothing.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from medpalm_m.rating import store as store_lib
from medpalm_m.rating import study as study_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  ranking_raters_per_case: int = 1  # the paper's side-by-side
  annotation_raters_per_case: int | None = None  # None: every rater (the paper's independent one)
  overlap: float = 0.0  # share of the cases every rater ranks, for inter-rater agreement
  seed: int = 0

  def check(self, num_raters: int) -> None:
    if num_raters < 1:
      raise ValueError("no raters: add them first (`python -m medpalm_m.rate add-rater`)")
    for name in ("ranking_raters_per_case", "annotation_raters_per_case"):
      value = getattr(self, name)
      if value is not None and not 0 <= value <= num_raters:
        raise ValueError(f"{name}={value}: must be between 0 and the {num_raters} raters")
    if not 0.0 <= self.overlap <= 1.0:
      raise ValueError(f"overlap={self.overlap}: a share of the cases, between 0 and 1")


@dataclasses.dataclass(frozen=True)
class Assignment:
  rater: str
  case_id: str
  ranking: bool
  annotation: bool
  order: tuple[str, ...]  # report sources as shown: A, B, C, ...


def _round_robin(num_cases: int, raters: Sequence[str], per_case: int) -> list[set[str]]:
  """per_case distinct raters for each case, spreading the load evenly (counts differ by <= 1)."""
  return [{raters[(i * per_case + j) % len(raters)] for j in range(per_case)} for i in range(num_cases)]


def make(raters: Sequence[str], case_ids: Sequence[str], sources: Sequence[str], plan: Plan) -> list[Assignment]:
  """Every (rater, case) pair that has something to do, in case order."""
  plan.check(len(raters))
  rng = np.random.default_rng(plan.seed)
  everyone = set(raters)
  shared = set(rng.choice(len(case_ids), size=math.ceil(plan.overlap * len(case_ids)), replace=False).tolist()
               if plan.overlap else [])
  rest = [i for i in range(len(case_ids)) if i not in shared]
  ranking = {i: everyone for i in shared}
  ranking.update(zip(rest, _round_robin(len(rest), raters, plan.ranking_raters_per_case)))
  per_case = len(raters) if plan.annotation_raters_per_case is None else plan.annotation_raters_per_case
  annotation = dict(enumerate(_round_robin(len(case_ids), raters, per_case)))
  out = []
  for i, case_id in enumerate(case_ids):
    for rater in raters:
      ranks, annotates = rater in ranking[i], rater in annotation[i]
      if ranks or annotates:
        order = tuple(sources[j] for j in rng.permutation(len(sources)))
        out.append(Assignment(rater, case_id, ranks, annotates, order))
  return out


def assign(study_path: str, db_path: str, plan: Plan) -> dict:
  """Makes the plan's assignments for the database's raters over the study's cases and stores
  them, with each case's report sources (so the analysis needs the database alone)."""
  study = study_lib.Study(study_path)
  with store_lib.Store(db_path) as store:
    raters = store.rater_names()
    case_ids, sources = study.case_ids(), study.sources()
    made = make(raters, case_ids, sources, plan)
    store.assign(study_lib.fingerprint(study_path), study_path, {c: sources for c in case_ids}, made)
  return {"raters": len(raters), "cases": len(case_ids), "assignments": len(made),
          "ranking": sum(a.ranking for a in made), "annotation": sum(a.annotation for a in made)}
