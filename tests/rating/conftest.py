"""A small rating study built from hand-made records: synthetic radiographs with their reports,
and three "models" whose reports each get one condition wrong. No model is trained."""

import dataclasses
import json
import os

import numpy as np
import pytest

from medpalm_m.rating import selection, study as study_lib

# Distinctive names, so a test can look for them in everything a rater receives.
MODELS = ("tinymodel_alpha", "tinymodel_bravo", "tinymodel_charlie")
INDICATIONS = ("cough and fever", "shortness of breath", "chest pain", "hypoxia")


def chest_records(n: int, seed: int = 0) -> list[dict]:
  """n single-image studies: a drawn radiograph and its findings (the reference report)."""
  from medpalm_m.data.synthetic import chest_xray
  rng = np.random.default_rng(seed)
  records = []
  for i in range(n):
    findings = chest_xray.sample_findings(rng)
    records.append({"id": f"img-{i:03d}", "study_id": f"s{i:03d}", "view": "PA",
                    "indication": INDICATIONS[i % len(INDICATIONS)], "findings_obj": findings,
                    "findings": chest_xray.write_report(findings, "PA"),
                    "image": chest_xray.draw_radiograph(rng, findings, "PA")})
  return records


def model_reports(records: list[dict]) -> dict[str, dict[str, dict[str, str]]]:
  """Per model, id -> {target, prediction}: model k misreads condition k (and so differs)."""
  from medpalm_m.data.synthetic import chest_xray
  out = {}
  for k, name in enumerate(MODELS):
    out[name] = {}
    for r in records:
      f = r["findings_obj"]
      wrong = [dataclasses.replace(f, cardiomegaly=not f.cardiomegaly),
               dataclasses.replace(f, edema=None if f.edema else "mild"),
               dataclasses.replace(f, effusion=None if f.effusion else ("small", "left"))][k]
      out[name][r["id"]] = {"target": r["findings"], "prediction": chest_xray.write_report(wrong, "PA")}
  return out


def write_predictions(directory, predictions: dict[str, dict[str, str]]) -> str:
  path = os.path.join(directory, "predictions.jsonl")
  with open(path, "w") as f:
    for example_id, p in predictions.items():
      f.write(json.dumps({"id": example_id, "prompt": "<img> ...", **p}) + "\n")
  return path


@pytest.fixture(scope="session")
def study_file(tmp_path_factory) -> str:
  """A 3-case study: the reference and the three models, four reports per case."""
  directory = tmp_path_factory.mktemp("study")
  records = chest_records(3)
  cases, _ = selection.select_cases(records, model_reports(records), num_cases=3, seed=0)
  path = str(directory / "study.sqlite")
  study_lib.write(path, cases, {study_lib.REFERENCE: "test split", **{m: f"/runs/{m}/eval" for m in MODELS}},
                  {"task": "hand-made", "split": "test", "seed": 0, "num_cases": 3})
  return path
