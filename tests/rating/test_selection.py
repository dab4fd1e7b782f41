"""Case selection: the paper's rule (single-image studies, no prior or other view in the
reference), the seeded sample, and the study file, from a real (tiny) TFDS split."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medpalm_m.rating import selection, study as study_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("report", [
    "Compared to the prior study, the effusion is smaller.",
    "Heart size is unchanged.",
    "No new consolidation.",
    "Stable mild cardiomegaly.",
    "Interval resolution of the left effusion.",
    "The lateral view shows a small effusion.",
    "PA and lateral views of the chest.",
    "Right lower lobe opacity, better seen on the lateral.",
    "Again seen is a right basilar opacity.",
    "Previously noted nodule is not seen.",
])
def test_reports_that_mention_a_prior_or_another_view_are_caught(report):
  assert selection.mentions_prior_or_view(report)


@pytest.mark.parametrize("report", [
    "Heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Large bilateral pleural effusions. Bibasilar atelectasis.",  # "bilateral" is no view
    "Blunting of the left lateral costophrenic angle.",  # an anatomical "lateral"
    "Patchy consolidation in the right upper lung.",
])
def test_reports_about_this_image_alone_are_kept(report):
  assert selection.mentions_prior_or_view(report) is None


def _record(i, study, findings):
  return {"id": f"img{i}", "study_id": study, "view": "PA", "indication": "cough", "findings": findings,
          "image": np.full((8, 10, 1), i, np.uint8)}


def test_selection_keeps_single_image_studies_without_priors_predicted_by_every_source():
  records = [_record(0, "s0", "Lungs clear."), _record(1, "s1", "Effusion."), _record(2, "s1", "Effusion."),
             _record(3, "s3", "Unchanged effusion."), _record(4, "s4", "Edema."),
             _record(5, "s5", "Cardiomegaly."), _record(6, "s6", "No pneumothorax.")]
  predictions = {
      "m1": {f"img{i}": {"target": records[i]["findings"], "prediction": f"m1 says {i}"} for i in range(7)},
      "m2": {f"img{i}": {"target": records[i]["findings"], "prediction": f"m2 says {i}"} for i in (0, 4, 5)},
  }
  cases, counts = selection.select_cases(records, predictions, num_cases=3, seed=0)
  # img1/img2 share study s1; img3 mentions a prior ("unchanged"); img6 has no m2 prediction.
  assert counts == {"records": 7, "single_image": 5, "no_prior_or_view": 4, "predicted_by_every_source": 3,
                    "selected": 3}
  assert sorted(c.case_id for c in cases) == ["img0", "img4", "img5"]
  case = next(c for c in cases if c.case_id == "img4")
  assert dict(case.reports) == {"reference": "Edema.", "m1": "m1 says 4", "m2": "m2 says 4"}
  assert np.asarray(Image.open(io.BytesIO(case.image_png))).tolist() == np.full((8, 10), 4).tolist()

  with pytest.raises(ValueError, match="only 3 qualify"):
    selection.select_cases(records, predictions, num_cases=4, seed=0)
  bad = {"m1": {**predictions["m1"], "img0": {"target": "another report", "prediction": "x"}}}
  with pytest.raises(ValueError, match="img0"):
    selection.select_cases(records, bad, num_cases=1, seed=0)
  with pytest.raises(ValueError, match="reference"):
    selection.select_cases(records, {"reference": predictions["m1"]}, num_cases=1, seed=0)


def test_the_sample_is_seeded():
  records = [_record(i, f"s{i}", "Lungs clear.") for i in range(30)]
  predictions = {"m": {r["id"]: {"target": r["findings"], "prediction": "x"} for r in records}}
  pick = lambda seed: [c.case_id for c in selection.select_cases(records, predictions, 5, seed)[0]]
  assert pick(0) == pick(0)
  assert pick(0) != pick(1)


def _tiny_task(monkeypatch):
  """A report task over a tiny synthetic chest X-ray builder with study ids, registered for this
  test only: test images 0-3 are two 2-image studies, image 4's report mentions a prior study."""
  from medpalm_m.data import tasks
  from medpalm_m.data.synthetic import chest_xray
  import tensorflow_datasets as tfds

  class TinyCxr(chest_xray.SyntheticMimicCxr):
    name = "rating_test_cxr"
    SPLIT_SIZES = {"train": 2, "test": 8}

    def features(self):
      features = dict(super().features())
      features["study_id"] = tfds.features.Text()
      return tfds.features.FeaturesDict(features)

    def generate(self, rng, index, split):
      record = super().generate(rng, index, split)
      record["study_id"] = f"{split}-s{index // 2 if index < 4 else index}"
      if split == "test" and index == 4:
        record["findings"] = "Compared with the prior study, " + record["findings"]
      return record

  task = tasks.Task(name="rating_test_cxr_report", builder=TinyCxr, formatter=chest_xray.format_report,
                    metrics=())
  tasks.all_tasks()  # the real registries first, so the undo below restores them as they were
  monkeypatch.setitem(tasks._TASKS, task.name, task)
  return task


def test_rate_select_builds_a_study_file_from_a_split_and_workdir_predictions(tmp_path, monkeypatch):
  task = _tiny_task(monkeypatch)
  data_dir = str(tmp_path / "tfds")
  task.builder(data_dir=data_dir).download_and_prepare()
  records = list(selection.split_records(task.name, data_dir))
  workdir = tmp_path / "run"
  for step, prefix in ((2, "old"), (4, "new")):  # the latest step's predictions are taken
    path = workdir / "eval" / f"predictions_step_{step}" / f"{task.name}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps({"id": r["id"], "prompt": "p", "target": r["findings"],
                                        "prediction": f"{prefix} {r['id']}"}) + "\n" for r in records))
  out = str(tmp_path / "study.sqlite")
  summary = selection.build_study(out, task=task.name, data_dir=data_dir, sources={"tiny": str(workdir)},
                                  num_cases=3, seed=0)
  assert summary["counts"] == {"records": 8, "single_image": 4, "no_prior_or_view": 3,
                               "predicted_by_every_source": 3, "selected": 3}
  study = study_lib.Study(out)
  assert study.sources() == ["reference", "tiny"]
  assert sorted(study.case_ids()) == ["rating_test_cxr-test-5", "rating_test_cxr-test-6", "rating_test_cxr-test-7"]
  by_id = {r["id"]: r for r in records}
  for case_id in study.case_ids():
    shown = study.case(case_id)
    assert shown.reports == {"reference": by_id[case_id]["findings"], "tiny": f"new {case_id}"}
    assert shown.indication == by_id[case_id]["indication"]
    image = np.asarray(Image.open(io.BytesIO(study.image_png(case_id))))
    np.testing.assert_array_equal(image, by_id[case_id]["image"][..., 0])
  with pytest.raises(FileExistsError):
    selection.build_study(out, task=task.name, data_dir=data_dir, sources={"tiny": str(workdir)}, num_cases=3)


def _rate(*args, stdin=""):
  return subprocess.run([sys.executable, "-m", "medpalm_m.rate", *args], cwd=ROOT, input=stdin,
                        capture_output=True, text=True, timeout=60)


def test_user_mistakes_are_one_error_line_and_exit_2(tmp_path, study_file):
  missing = str(tmp_path / "nowhere")
  cases = [
      (("select", f"--data_dir={missing}", f"--source=m={missing}", f"--out={tmp_path}/s.sqlite"), missing),
      (("serve", f"--study={missing}", f"--db={tmp_path}/r.sqlite"), missing),
      (("analyze", f"--db={missing}"), missing),
      (("assign", f"--study={study_file}", f"--db={tmp_path}/r.sqlite", "--annotation_raters_per_case=x"),
       "--annotation_raters_per_case"),
      (("add-rater", f"--db={tmp_path}/r.sqlite", "--name=al"), "password"),  # too short
      (("serve", "--study"), "--study"),
  ]
  for args, named in cases:
    result = _rate(*args, stdin="short\n")
    assert result.returncode == 2, (args, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], (args, result.stderr)
