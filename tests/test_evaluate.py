"""Evaluation end to end on a briefly trained small model: report, table, no recompilation."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from medpalm_m import evaluate, generate, train
from medpalm_m.data import synthetic
from medpalm_m.model import decode
from tests import small_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data_dir):
  cfg = small_config.get_config()
  cfg.data.data_dir = synthetic_data_dir
  cfg.train.num_steps = 4
  workdir = str(tmp_path_factory.mktemp("evaluate"))
  train.train(cfg, workdir)
  return cfg, workdir


def test_report_has_every_task_metric_count_and_baseline(trained):
  cfg, workdir = trained
  report = evaluate.evaluate(cfg, workdir)
  with open(os.path.join(workdir, "eval", "step_4.json")) as f:
    saved = json.load(f)
  assert saved["step"] == 4 and set(saved["tasks"]) == set(small_config.TASKS)
  for name, result in saved["tasks"].items():
    assert result["n"] == cfg.eval.max_examples_per_task
    task_metrics = synthetic.synthetic_tasks()[name].metrics
    assert set(task_metrics) <= set(result) and set(task_metrics) <= set(result["baseline"])
    for metric in task_metrics:
      assert 0.0 <= result[metric] <= 100.0 or np.isnan(result[metric])
  table = evaluate.format_table(report)
  assert "synthetic_precision_fda" in table and "snp_f1" in table and "99.35" in table  # paper 12B
  assert not os.path.exists(os.path.join(workdir, "eval", "predictions_step_4"))
  beaten, compared = evaluate.baseline_summary(report)
  assert 0 <= beaten <= compared <= 5 and f"above the baseline on {beaten} of {compared}" in table


def test_a_second_evaluation_compiles_nothing_new(trained):
  cfg, workdir = trained
  trainer, params, _ = evaluate.load_params(cfg, workdir, None)
  tokenizer = train.prepare_data(cfg)[1]
  evaluator = evaluate.Evaluator(cfg, trainer.template, tokenizer, train.sequence_spec(cfg, trainer.model_cfg))
  # Generation, and option scoring for AUC: each compiled once for every task.
  evaluate.evaluate(cfg, workdir, task_names=["synthetic_vqa_rad", "synthetic_cbis_ddsm_mass"],
                    params=params, trainer=trainer,
                    evaluator=evaluator, step=4)
  sizes = (evaluator._generate._cache_size(), evaluator._score._cache_size())
  evaluate.evaluate(cfg, workdir, task_names=["synthetic_precision_fda", "synthetic_cbis_ddsm_calc"],
                    params=params, trainer=trainer, evaluator=evaluator, step=4)
  assert (evaluator._generate._cache_size(), evaluator._score._cache_size()) == sizes == (1, 1)


def test_evaluating_some_tasks_again_keeps_the_others(trained, tmp_path):
  cfg, workdir = trained
  workdir = shutil.copytree(workdir, tmp_path / "copy", ignore=shutil.ignore_patterns("eval"))
  first = evaluate.evaluate(cfg, workdir, task_names=["synthetic_vqa_rad", "synthetic_medqa"])
  again = evaluate.evaluate(cfg, workdir, task_names=["synthetic_medqa"])
  with open(os.path.join(workdir, "eval", "step_4.json")) as f:
    saved = json.load(f)
  assert set(saved["tasks"]) == set(again["tasks"]) == {"synthetic_vqa_rad", "synthetic_medqa"}
  assert saved["tasks"]["synthetic_vqa_rad"] == first["tasks"]["synthetic_vqa_rad"]
  # Another split is another report beside it: neither overwrites the other.
  other = evaluate.evaluate(cfg, workdir, task_names=["synthetic_medqa"], split="train")
  assert set(other["tasks"]) == {"synthetic_medqa"}
  with open(os.path.join(workdir, "eval", "step_4_train.json")) as f:
    assert json.load(f)["split"] == "train"
  with open(os.path.join(workdir, "eval", "step_4.json")) as f:
    assert json.load(f) == saved


def test_predictions_are_written_only_when_asked(trained):
  cfg, workdir = trained
  cfg = cfg.copy_and_resolve_references()
  cfg.eval.write_predictions = True
  evaluate.evaluate(cfg, workdir, task_names=["synthetic_medqa"])
  path = os.path.join(workdir, "eval", "predictions_step_4", "synthetic_medqa.jsonl")
  rows = [json.loads(line) for line in open(path)]
  assert len(rows) == cfg.eval.max_examples_per_task and {"id", "prompt", "target", "prediction"} <= set(rows[0])


def test_generate_answers_about_an_image_file(trained, tmp_path):
  cfg, workdir = trained
  image = tmp_path / "scan.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)).save(image)
  result = generate.answer(cfg, workdir, "Given <img>. Q: Is there an abnormality? A:", [str(image)],
                           sampling=decode.SamplingConfig(max_new_tokens=4))
  assert result["step"] == 4 and isinstance(result["answer"], str)
  assert len(result["token_probs"]) == len(result["token_ids"]) <= 4
  assert all(0.0 < p <= 1.0 for p in result["token_probs"])
  with pytest.raises(ValueError, match="1 <img> marker"):
    generate.answer(cfg, workdir, "Given <img>. Q: ?", [str(image), str(image)],
                    sampling=decode.SamplingConfig(max_new_tokens=2))


def test_periodic_evaluation_during_training_uses_the_evaluator(tmp_path, synthetic_data_dir):
  cfg = small_config.get_config("synthetic_pubmedqa")
  cfg.data.data_dir = synthetic_data_dir
  cfg.train.update(num_steps=4, eval_every=2)
  cfg.eval.max_examples_per_task = 4
  train.train(cfg, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "eval")) == ["step_2.json", "step_4.json"]
  logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  evals = [r for r in logged if "eval" in r]
  assert [r["step"] for r in evals] == [2, 4]
  assert "synthetic_pubmedqa/accuracy" in evals[0]["eval"]
