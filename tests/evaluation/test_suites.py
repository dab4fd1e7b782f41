"""Evaluation suites (config.evals) on a briefly trained small model: tasks outside the training
mixture, two-image prompts, chain-of-thought answers, reports that do not overwrite each other."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import base
from medpalm_m import evaluation, runtime, trainer
from medpalm_m.data import pipeline, preprocess, prompts, tasks
from medpalm_m.data import tokenizer as tok
from medpalm_m.evaluation import scoring, suites
from tests import small_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZERO_SHOT = ("synthetic_tb_zero_shot", "synthetic_tb_zero_shot_cot", "synthetic_mimic_cxr_two_view")


def suite_config(data_dir: str):
  cfg = small_config.get_config()
  cfg.data.update(data_dir=data_dir, build_synthetic=False)
  cfg.eval.max_examples_per_task = 6
  cfg.evals.zero_shot = base.eval_suite(ZERO_SHOT, max_decode_tokens=12, max_images=2)
  cfg.evals.qa = base.eval_suite(["synthetic_medmcqa"], max_decode_tokens=4)
  return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data_dir):
  cfg = suite_config(synthetic_data_dir)
  cfg.train.num_steps = 2
  workdir = str(tmp_path_factory.mktemp("suites"))
  trainer.train(cfg, workdir)
  return cfg, workdir


def test_a_suite_evaluates_tasks_outside_the_training_mixture(trained):
  cfg, workdir = trained
  assert not set(ZERO_SHOT) & set(cfg.data.mixture)
  report = evaluation.evaluate(cfg, workdir, suite="zero_shot")
  with open(os.path.join(workdir, "eval", "zero_shot", "step_2.json")) as f:
    saved = json.load(f)
  assert saved["suite"] == "zero_shot" and set(saved["tasks"]) == set(ZERO_SHOT)
  tb, cot, two_view = (saved["tasks"][t] for t in ZERO_SHOT)
  assert {"accuracy", "macro_auc"} <= set(tb)
  assert "unparseable" not in tb or tb["unparseable"] > 0  # stated when nonzero
  assert 0 <= cot["unparseable"] <= cot["n"] == 6  # always stated for a chain of thought
  # Two images per example and none dropped: the suite's layout made room for the second. (This
  # small config's 128-token budget cuts the instruction; the tiny default's cuts nothing.)
  assert two_view["n"] == 6 and "dropped" not in two_view
  assert not os.path.exists(os.path.join(workdir, "eval", "step_2.json"))  # the default report is apart
  table = evaluation.format_table(report)
  assert table.startswith("Suite 'zero_shot' results at step 2") and "86.96" in table  # paper 12B TB
  assert "synthetic_tb_zero_shot_cot: " in table


def test_two_suites_and_the_default_evaluation_do_not_overwrite_each_other(trained):
  cfg, workdir = trained
  evaluation.evaluate(cfg, workdir, suite="qa")
  evaluation.evaluate(cfg, workdir, task_names=["synthetic_medqa"])
  for path, expected in ((("qa", "step_2.json"), {"synthetic_medmcqa"}), (("step_2.json",), {"synthetic_medqa"})):
    with open(os.path.join(workdir, "eval", *path)) as f:
      assert set(json.load(f)["tasks"]) == expected
  with pytest.raises(KeyError, match="no evaluation suite 'nope' in config.evals .*qa, zero_shot"):
    evaluation.evaluate(cfg, workdir, suite="nope")


def test_the_cli_runs_a_suite_and_names_it(trained, tmp_path):
  cfg, workdir = trained
  config = tmp_path / "config.py"
  config.write_text(
      "from tests.evaluation import test_suites\n"
      f"def get_config():\n  return test_suites.suite_config({cfg.data.data_dir!r})\n")
  out = subprocess.run([sys.executable, "-m", "medpalm_m.evaluate", f"--config={config}",
                        f"--workdir={workdir}", "--suite=qa"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "Suite 'qa' results at step 2" in out.stdout
  assert f"wrote {os.path.join(workdir, 'eval', 'qa', 'step_2.json')}" in out.stdout


def test_two_image_prompts_put_image_k_at_placeholder_k_in_evaluation(trained):
  cfg, workdir = trained
  rt = runtime.Runtime(cfg)
  params, _ = rt.restore_params(workdir)
  tokenizer = runtime.prepare_data(cfg)[1]
  suite = suites.named_suite(cfg, "zero_shot")
  evaluator = evaluation.suite_evaluator(rt, tokenizer, suite)
  example = pipeline.TaskSource(tasks.get("synthetic_mimic_cxr_two_view"), "test", cfg.data.data_dir)[0]
  features = preprocess.Preprocessor(tokenizer, evaluator.spec, {example["task"]: 0})(example)
  batch = evaluator.global_batch([features] * evaluator.batch_size)
  model = rt.template.bind(params)
  embedded = np.asarray(model.embed_inputs(batch["tokens"], batch["images"]))[0]
  image_tokens = np.asarray(model.encode_images(batch["images"]))[0]  # [K, slots, width]
  slots = np.flatnonzero(np.asarray(batch["tokens"])[0] == tok.IMAGE_ID).reshape(2, -1)
  assert slots.shape[1] == evaluator.spec.image_slots
  for k in range(2):
    np.testing.assert_allclose(embedded[slots[k]], image_tokens[k], rtol=1e-5, atol=1e-6)
  assert not np.allclose(image_tokens[0], image_tokens[1])  # two different views, told apart


def test_the_suite_layout_adds_one_image_of_room_per_extra_image():
  spec = preprocess.SequenceSpec(max_prompt_tokens=100, max_target_tokens=8, max_images=1, image_size=32,
                                 image_slots=16)
  two = suites.Suite("s", ("t",), "test", 0, 8, max_images=2).sequence_spec(spec)
  assert (two.max_images, two.max_prompt_tokens) == (2, 116)
  assert suites.Suite("s", ("t",), "test", 0, 8, max_images=1).sequence_spec(spec) == spec


def test_a_two_view_prompt_that_fits_one_image_of_text_is_not_dropped(synthetic_data_dir):
  """The text room of a one-image prompt is kept: with the training budget the same two-image
  prompt would lose its beginning (an instruction, an exemplar, or with less text an image: then
  the example is dropped)."""
  cfg = suite_config(synthetic_data_dir)
  tokenizer = runtime.prepare_data(cfg)[1]
  train_spec = runtime.sequence_spec(cfg)
  example = pipeline.TaskSource(tasks.get("synthetic_mimic_cxr_two_view"), "test", synthetic_data_dir)[0]
  prompt = example["prompt"]
  query = prompt[prompt.rindex("Given the", 0, prompt.rindex("Given the LATERAL")):]  # both views, the question

  def length(prompt: str) -> int:
    return len(tokenizer.encode_prompt(prompt, train_spec.image_slots)[0])

  words = 0  # text before the query, until the prompt no longer fits the one-image budget
  while length(" ".join(["heart"] * words + [query])) <= train_spec.max_prompt_tokens:
    words += 1
  example = {**example, "prompt": " ".join(["heart"] * words + [query])}
  assert length(example["prompt"]) <= train_spec.max_prompt_tokens + train_spec.image_slots
  two_image_spec = suites.named_suite(cfg, "zero_shot").sequence_spec(train_spec)
  kept = preprocess.Preprocessor(tokenizer, two_image_spec, {example["task"]: 0})(example)
  assert not kept["dropped"] and not kept["prompt_truncated"]
  cramped = preprocess.Preprocessor(tokenizer, dataclasses.replace(train_spec, max_images=2),
                                    {example["task"]: 0})(example)
  assert cramped["prompt_truncated"] or cramped["dropped"]


def test_chain_of_thought_answers_parse_and_an_unparseable_one_is_counted_and_wrong():
  task = tasks.get("montgomery_tb_cot")
  generated = ["There is a cavity in the right upper lobe. The final answer is (B) Yes.",
               "The lungs are clear, so the answer is: No.",
               "The lungs are clear. There is no cavity.",  # never states an option
               "Upper lobe cavity. Answer: (A) No"]
  predictions = [task.postprocess(g) for g in generated]
  assert predictions == ["(B) Yes.", "No.", "There is no cavity.", "(A) No"]
  examples = [{"id": str(i), "label": label} for i, label in enumerate((1, 0, 0, 1))]
  targets = ["Yes.", "No.", "No.", "Yes."]
  cfg = base.get_config()
  result = scoring.score_grouped(task, examples, predictions, targets, None, cfg)
  assert result["accuracy"] == 50.0  # the unparseable answer is wrong although the target is "No"
  assert scoring.unparseable(task, examples, predictions) == 1
  assert prompts.final_answer("  ") == ""


def test_a_suite_with_a_cadence_runs_during_training(tmp_path, synthetic_data_dir):
  cfg = suite_config(synthetic_data_dir)
  cfg.train.update(num_steps=2, checkpoint_every=2)
  cfg.evals.qa.every = 2  # zero_shot keeps every=0: only on demand
  trainer.train(cfg, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "eval")) == ["qa"]
  with open(tmp_path / "eval" / "qa" / "step_2.json") as f:
    assert json.load(f)["suite"] == "qa"
  logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert any("synthetic_medmcqa/accuracy" in r.get("eval_qa", {}) for r in logged)
