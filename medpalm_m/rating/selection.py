"""Case selection as in the paper's radiologist study, and the study file it becomes.

Med-PaLM M §6.3: 246 MIMIC-CXR test cases, "restricted to studies with a single image", and
studies whose reference report mentions other views or prior studies left out (a rater shown
one image cannot judge a sentence about a lateral view or an earlier film). Here:

1. the test split's records are grouped by study (`study_id`; a record without one, as in the
   synthetic benchmark, is its own study) and only studies with one image are kept;
2. a case is left out when its reference report matches `PRIOR_OR_VIEW_PATTERNS`;
3. only cases every report source has a prediction for are kept, and N are sampled with a seed.

Report sources are the reference (the split's findings) plus any number of named predictions
files, as `medpalm_m.evaluate` writes them with `--config.eval.write_predictions=True`.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from medpalm_m.rating import study as study_lib

# Words and phrases by which a report refers to a prior study or to another view. Matched as
# whole words, case-insensitively. Comparison words ("unchanged", "new", "increased") are in the
# list because in MIMIC-CXR findings they almost always compare with an earlier film.
PRIOR_OR_VIEW_PATTERNS = (
    # prior studies
    r"priors?", r"previous(ly)?", r"compar(ed|ison|ing)", r"interval(ly)?", r"again", r"unchanged",
    r"(un)?stable", r"new(ly)?", r"since", r"recent(ly)?", r"improv(ed|ing|ement)",
    r"worse(n|ned|ning)?", r"increas(ed|ing)", r"decreas(ed|ing)", r"resol(ved|ving|ution)",
    r"persist(s|ed|ent|ence)?", r"re-?demonstrat(ed|es|ion)", r"remain(s|ed|ing)?", r"no longer",
    r"earlier", r"as before", r"follow-?up",
    # other views
    r"views?", r"lateral (view|radiograph|image|film|projection)", r"on the lateral",
    r"(pa|ap|frontal) and lateral", r"frontal (view|radiograph|image|film|projection)",
    r"oblique", r"decubitus",
)
_PRIOR_OR_VIEW = re.compile(r"\b(" + "|".join(PRIOR_OR_VIEW_PATTERNS) + r")\b", re.IGNORECASE)


def mentions_prior_or_view(report: str) -> str | None:
  """The first phrase by which a report refers to a prior study or another view, or None."""
  match = _PRIOR_OR_VIEW.search(report)
  return match.group(0) if match else None


def predictions_file(path: str, task: str, step: int | None = None) -> str:
  """A predictions .jsonl, given itself or a workdir (its latest `eval/predictions_step_N/`)."""
  if os.path.isfile(path):
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: neither a predictions .jsonl nor a workdir")
  if step is not None:
    found = os.path.join(path, "eval", f"predictions_step_{step}", f"{task}.jsonl")
    if not os.path.isfile(found):
      raise FileNotFoundError(f"{found} not found: evaluate step {step} with "
                              "--config.eval.write_predictions=True")
    return found
  pattern = os.path.join(path, "eval", "predictions_step_*", f"{task}.jsonl")
  steps = {}
  for found in glob.glob(pattern):
    name = os.path.basename(os.path.dirname(found))[len("predictions_step_"):]
    if name.isdigit():
      steps[int(name)] = found
  if not steps:
    raise FileNotFoundError(f"{pattern}: no predictions of task {task!r} in workdir {path}; "
                            "evaluate with --config.eval.write_predictions=True")
  return steps[max(steps)]


def read_predictions(path: str) -> dict[str, dict[str, str]]:
  """id -> {"target", "prediction"} of one predictions file; a malformed line names its place."""
  out: dict[str, dict[str, str]] = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from e
      missing = [k for k in ("id", "target", "prediction") if not isinstance(record.get(k), str)]
      if missing:
        raise ValueError(f"{path}:{number}: needs string fields {missing}")
      if record["id"] in out:
        raise ValueError(f"{path}:{number}: id {record['id']!r} appears twice")
      out[record["id"]] = {"target": record["target"], "prediction": record["prediction"]}
  if not out:
    raise ValueError(f"{path}: no predictions")
  return out


def split_records(task_name: str, data_dir: str, split: str = "test") -> Iterator[dict[str, Any]]:
  """The raw records of a report task's split: id, study_id, view, indication, findings, image."""
  from medpalm_m.data import pipeline, tasks
  source = pipeline.TaskSource(tasks.get(task_name), split, data_dir)
  for i in range(len(source.records)):
    record = source.records[i]
    yield {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}


def single_image_cases(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """Records that are the only image of their study, in split order."""
  records = list(records)
  images_per_study: dict[str, int] = {}
  for record in records:
    key = str(record.get("study_id") or record["id"])
    images_per_study[key] = images_per_study.get(key, 0) + 1
  return [r for r in records if images_per_study[str(r.get("study_id") or r["id"])] == 1]


def select_cases(records: Iterable[Mapping[str, Any]], predictions: Mapping[str, Mapping[str, Mapping[str, str]]],
                 num_cases: int, seed: int) -> tuple[list[study_lib.Case], dict[str, int]]:
  """The paper's selection over a split's records and each source's predictions.

  Returns the cases (in a seeded random order) and how many records each rule left.
  """
  if study_lib.REFERENCE in predictions:
    raise ValueError(f"the source name {study_lib.REFERENCE!r} is the reference report's; "
                     "name the predictions differently")
  records = list(records)
  single = single_image_cases(records)
  clean = [r for r in single if mentions_prior_or_view(str(r["findings"])) is None]
  for name, by_id in predictions.items():
    for record in clean:
      found = by_id.get(str(record["id"]))
      if found is not None and found["target"].strip() != str(record["findings"]).strip():
        raise ValueError(f"source {name!r}: the target of {record['id']!r} differs from the split's "
                         "findings; were these predictions made on another split or dataset?")
  predicted = [r for r in clean if all(str(r["id"]) in by_id for by_id in predictions.values())]
  counts = {"records": len(records), "single_image": len(single), "no_prior_or_view": len(clean),
            "predicted_by_every_source": len(predicted)}
  if num_cases > len(predicted):
    raise ValueError(f"asked for {num_cases} cases but only {len(predicted)} qualify ({counts})")
  picked = np.random.default_rng(seed).choice(len(predicted), size=num_cases, replace=False)
  cases = []
  for index in picked.tolist():
    record = predicted[index]
    reports = {study_lib.REFERENCE: str(record["findings"])}
    reports.update({name: by_id[str(record["id"])]["prediction"] for name, by_id in predictions.items()})
    cases.append(study_lib.Case(
        case_id=str(record["id"]), study_id=str(record.get("study_id") or record["id"]),
        view=str(record.get("view", "")), indication=str(record.get("indication", "")),
        image_png=study_lib.png_bytes(np.asarray(record["image"])), reports=reports))
  counts["selected"] = len(cases)
  return cases, counts


def parse_sources(specs: Sequence[str]) -> dict[str, str]:
  """["name=path", ...] -> {name: path}; names are what the analysis calls each model."""
  out: dict[str, str] = {}
  for spec in specs:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--source {spec!r}: expected NAME=WORKDIR or NAME=FILE.jsonl")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
      raise ValueError(f"--source {spec!r}: a name is letters, digits, '_', '.' or '-'")
    if name in out or name == study_lib.REFERENCE:
      raise ValueError(f"--source {spec!r}: the name {name!r} is taken")
    out[name] = path
  if not out:
    raise ValueError("--source: give at least one NAME=WORKDIR whose predictions are rated")
  return out


def build_study(out: str, *, task: str, data_dir: str, sources: Mapping[str, str], num_cases: int,
                seed: int = 0, split: str = "test", step: int | None = None) -> dict[str, Any]:
  """Selects the cases and writes the study file; returns what was done (for the command line)."""
  if os.path.exists(out):
    raise FileExistsError(f"{out} exists; a study file is never overwritten (choose another --out)")
  files = {name: predictions_file(path, task, step) for name, path in sources.items()}
  predictions = {name: read_predictions(path) for name, path in files.items()}
  cases, counts = select_cases(split_records(task, data_dir, split), predictions, num_cases, seed)
  origins = {study_lib.REFERENCE: f"{task}/{split} findings",
             **{name: os.path.abspath(path) for name, path in files.items()}}
  study_lib.write(out, cases, origins, {"task": task, "split": split, "seed": seed,
                                        "num_cases": num_cases, "counts": counts})
  return {"study": out, "cases": len(cases), "sources": list(origins), "counts": counts}
