"""medpalm_m.evaluation end to end on a briefly trained small model: report, table, no recompilation."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from medpalm_m import evaluation, runtime, trainer
from medpalm_m.evaluation import scoring
from medpalm_m.data import pipeline, preprocess, synthetic, tasks as tasks_lib
from medpalm_m.model import decode
from tests import small_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data_dir):
  cfg = small_config.get_config()
  cfg.data.data_dir = synthetic_data_dir
  cfg.train.num_steps = 4
  workdir = str(tmp_path_factory.mktemp("evaluate"))
  trainer.train(cfg, workdir)
  return cfg, workdir


def test_report_has_every_task_metric_count_and_baseline(trained):
  cfg, workdir = trained
  report = evaluation.evaluate(cfg, workdir)
  with open(os.path.join(workdir, "eval", "step_4.json")) as f:
    saved = json.load(f)
  assert saved["step"] == 4 and set(saved["tasks"]) == set(small_config.TASKS)
  for name, result in saved["tasks"].items():
    assert result["n"] == cfg.eval.max_examples_per_task
    task_metrics = synthetic.synthetic_tasks()[name].metrics
    assert set(task_metrics) <= set(result) and set(task_metrics) <= set(result["baseline"])
    for metric in task_metrics:
      if isinstance(result[metric], str):  # the truth-set F1 of 8 of a split's candidates
        assert result[metric].startswith("skipped: ") and metric.startswith("truth_")
        continue
      assert 0.0 <= result[metric] <= 100.0 or np.isnan(result[metric])
  table = evaluation.format_table(report)
  assert "synthetic_precision_fda" in table and "snp_f1" in table and "99.35" in table  # paper 12B
  assert not os.path.exists(os.path.join(workdir, "eval", "predictions_step_4"))
  beaten, compared = evaluation.baseline_summary(report)
  assert 0 <= beaten <= compared <= 5 and f"above the baseline on {beaten} of {compared}" in table


def test_a_second_evaluation_compiles_nothing_new(trained):
  cfg, workdir = trained
  rt = runtime.Runtime(cfg)
  params, _ = rt.restore_params(workdir)
  tokenizer = runtime.prepare_data(cfg)[1]
  evaluator = evaluation.Evaluator(rt, tokenizer)
  # Generation, and option scoring for AUC: each compiled once for every task.
  evaluation.evaluate(cfg, workdir, task_names=["synthetic_vqa_rad", "synthetic_cbis_ddsm_mass"],
                    params=params, runtime=rt,
                    evaluator=evaluator, step=4)
  # Generation (decode_batch), and for a task scored for AUC its generation and option scores
  # from one prefill (_decode_and_score): each compiled once for every task.
  compiled = lambda: tuple(f._cache_size() for f in (evaluator.decode_batch, evaluator._decode_and_score))
  sizes = compiled()
  # Another decode limit (precision_fda's 3 tokens, vqa_rad's 48) and another task's options of
  # the same width.
  evaluation.evaluate(cfg, workdir, task_names=["synthetic_precision_fda", "synthetic_cbis_ddsm_calc"],
                    params=params, runtime=rt, evaluator=evaluator, step=4)
  assert compiled() == sizes == (1, 1)


def mixed_option_prompts(trained, images: int, texts: int):
  """CBIS-DDSM mass (image) prompts and text-only PubMedQA prompts of other lengths, rows over
  batches of 4 (the last batch wraps around): (runtime, params, task, examples, preprocessor,
  evaluator)."""
  cfg, workdir = trained
  rt = runtime.Runtime(cfg)
  params, _ = rt.restore_params(workdir)
  data_dir, tokenizer = runtime.prepare_data(cfg)
  task = tasks_lib.get("synthetic_cbis_ddsm_mass")
  examples = [*pipeline.eval_examples(task, data_dir, "test", max_examples=images, seed=0),
              *pipeline.eval_examples(tasks_lib.get("synthetic_pubmedqa"), data_dir, "test", max_examples=texts,
                                      seed=0)]
  preprocessor = preprocess.Preprocessor(tokenizer, rt.spec, pipeline.task_ids(sorted({ex["task"] for ex in examples})))
  assert len({int(preprocessor(ex)["prompt_length"]) for ex in examples}) > 2
  return rt, params, task, examples, preprocessor, evaluation.Evaluator(rt, tokenizer, batch_size=4)


def test_options_scored_through_a_shared_prompt_equal_one_forward_pass_per_option(trained):
  rt, params, task, examples, preprocessor, evaluator = mixed_option_prompts(trained, images=4, texts=3)
  continuations = [preprocessor.target_ids(option)[0] for option in task.options]
  shared = evaluator.option_scores(params, len(examples), lambda i: preprocessor(examples[i]), continuations)
  full = jax.jit(lambda p, b: decode.score_continuations(rt.template.bind(p), b["tokens"], b["images"],
                                                           b["input_mask"], b["mask_ar"], b["mask_loss"]))
  for k, option in enumerate(task.options):
    batch = preprocess.collate([preprocessor({**ex, "target": option}) for ex in examples])
    np.testing.assert_allclose(shared[:, k], np.asarray(full(params, batch)), atol=1e-5, rtol=1e-5)


def test_decoding_and_scoring_from_one_prefill_equal_doing_each_apart(trained):
  cfg, _ = trained
  rt, params, task, examples, preprocessor, evaluator = mixed_option_prompts(trained, images=5, texts=2)
  feature_at = lambda i: preprocessor(examples[i])
  continuations = [preprocessor.target_ids(option)[0] for option in task.option_targets()]
  tokens, probs = evaluator.decode_and_option_probabilities(params, len(examples), feature_at, continuations)
  apart = evaluator._decode_rows(params, len(examples), feature_at, evaluator.decode_limit(continuations))
  assert tokens == apart and probs.shape == (len(examples), len(continuations))
  np.testing.assert_allclose(probs, evaluator.option_probabilities(params, len(examples), feature_at, continuations),
                             atol=1e-5, rtol=1e-5)
  # Longer than any option: the full decode length, as a task without options decodes.
  np.testing.assert_array_equal(
      evaluator._decode_and_score(params, evaluator.global_batch([feature_at(i) for i in range(4)]),
                                  np.int32(cfg.eval.max_decode_tokens), *evaluator._option_arrays(continuations),
                                  np.int32(len(continuations)))[0],
      evaluator.decode_batch(params, evaluator.global_batch([feature_at(i) for i in range(4)]))[0])


def test_evaluating_some_tasks_again_keeps_the_others(trained, tmp_path):
  cfg, workdir = trained
  workdir = shutil.copytree(workdir, tmp_path / "copy", ignore=shutil.ignore_patterns("eval"))
  first = evaluation.evaluate(cfg, workdir, task_names=["synthetic_vqa_rad", "synthetic_medqa"])
  again = evaluation.evaluate(cfg, workdir, task_names=["synthetic_medqa"])
  with open(os.path.join(workdir, "eval", "step_4.json")) as f:
    saved = json.load(f)
  assert set(saved["tasks"]) == set(again["tasks"]) == {"synthetic_vqa_rad", "synthetic_medqa"}
  assert saved["tasks"]["synthetic_vqa_rad"] == first["tasks"]["synthetic_vqa_rad"]
  # Another split is another report beside it: neither overwrites the other.
  other = evaluation.evaluate(cfg, workdir, task_names=["synthetic_medqa"], split="train")
  assert set(other["tasks"]) == {"synthetic_medqa"}
  with open(os.path.join(workdir, "eval", "step_4_train.json")) as f:
    assert json.load(f)["split"] == "train"
  with open(os.path.join(workdir, "eval", "step_4.json")) as f:
    assert json.load(f) == saved


def test_predictions_are_written_only_when_asked(trained):
  cfg, workdir = trained
  cfg = cfg.copy_and_resolve_references()
  cfg.eval.write_predictions = True
  evaluation.evaluate(cfg, workdir, task_names=["synthetic_medqa"])
  path = os.path.join(workdir, "eval", "predictions_step_4", "synthetic_medqa.jsonl")
  rows = [json.loads(line) for line in open(path)]
  assert len(rows) == cfg.eval.max_examples_per_task and {"id", "prompt", "target", "prediction"} <= set(rows[0])


def test_generate_answers_about_an_image_file(trained, tmp_path):
  cfg, workdir = trained
  image = tmp_path / "scan.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)).save(image)
  result = evaluation.answer(cfg, workdir, "Given <img>. Q: Is there an abnormality? A:", [str(image)],
                           sampling=decode.SamplingConfig(max_new_tokens=4))
  assert result["step"] == 4 and isinstance(result["answer"], str)
  assert len(result["token_probs"]) == len(result["token_ids"]) <= 4
  assert all(0.0 < p <= 1.0 for p in result["token_probs"])
  with pytest.raises(ValueError, match="1 <img> marker"):
    evaluation.answer(cfg, workdir, "Given <img>. Q: ?", [str(image), str(image)],
                    sampling=decode.SamplingConfig(max_new_tokens=2))


def test_periodic_evaluation_during_training_uses_the_evaluator(tmp_path, synthetic_data_dir):
  cfg = small_config.get_config("synthetic_pubmedqa")
  cfg.data.data_dir = synthetic_data_dir
  cfg.train.update(num_steps=4, eval_every=2)
  cfg.eval.max_examples_per_task = 4
  trainer.train(cfg, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "eval")) == ["step_2.json", "step_4.json"]
  logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  evals = [r for r in logged if "eval" in r]
  assert [r["step"] for r in evals] == [2, 4]
  assert "synthetic_pubmedqa/accuracy" in evals[0]["eval"]


def _eval_cfg():
  cfg = small_config.get_config()
  cfg.eval.bootstrap = 0
  return cfg


def test_bootstrap_margin_tells_a_real_gain_from_the_baseline_itself():
  from medpalm_m.data import tasks as tasks_lib
  task = tasks_lib.get("synthetic_vqa_rad")
  rng = np.random.default_rng(0)
  targets = [str(rng.choice(["yes", "no", "left lung", "right kidney", "ct"], p=[.4, .3, .1, .1, .1]))
             for _ in range(60)]
  examples = [{"id": str(i)} for i in range(60)]
  perfect = scoring.bootstrap_margin(task, examples, targets, targets, None, _eval_cfg(), 200)
  assert set(perfect) == {"bleu1", "token_f1"}
  assert perfect["token_f1"][0] > 30  # exact answers vs always "yes": 100 vs ~40
  # The baseline's own answer on the full set: on a resample where "no" is the most frequent the
  # baseline answers "no" and scores higher, so the interval ends at 0 and never clears it.
  constant = ["yes"] * 60
  same = scoring.bootstrap_margin(task, examples, constant, targets, None, _eval_cfg(), 200)
  assert same["token_f1"][1] == 0.0 and same["token_f1"][0] <= 0.0
  noisy = [t if rng.random() < 0.45 else "no" for t in targets]
  interval = scoring.bootstrap_margin(task, examples, noisy, targets, None, _eval_cfg(), 200)["token_f1"]
  assert interval[0] < interval[1]


def test_bootstrap_margin_resamples_within_each_condition_and_scores_auc():
  from medpalm_m.data import tasks as tasks_lib
  task = tasks_lib.get("synthetic_mimic_cxr_classification")
  rng = np.random.default_rng(1)
  examples, targets, probs = [], [], []
  for i in range(100):
    label = int(rng.random() < 0.4)
    examples.append({"id": str(i), "condition": ["edema", "cardiomegaly"][i % 2], "label": label})
    targets.append(task.options[label])
    yes = np.clip(0.5 + (0.3 if label else -0.3) + rng.normal(0, 0.2), 0.01, 0.99)
    probs.append([1 - yes, yes])
  predictions = [task.options[int(p[1] > 0.5)] for p in probs]
  margin = scoring.bootstrap_margin(task, examples, predictions, targets, np.asarray(probs), _eval_cfg(), 200)
  assert margin["macro_auc"][0] > 25  # well-separated scores: AUC ~ 0.9+ against the baseline's 50
  uniform = np.full((100, 2), 0.5)
  flat = scoring.bootstrap_margin(task, examples, predictions, targets, uniform, _eval_cfg(), 50)
  assert flat["macro_auc"] == [0.0, 0.0]


def test_the_genomics_report_has_the_truth_set_f1_which_a_missed_variant_lowers(trained, tmp_path,
                                                                                synthetic_data_dir):
  """Beside the per-candidate SNP/indel F1, the truth-set F1 of the whole split, from the truth
  variants the built dataset records as having no candidate; a subsample says why it has none."""
  cfg, workdir = trained
  workdir = shutil.copytree(workdir, tmp_path / "copy", ignore=shutil.ignore_patterns("eval"))
  cfg = cfg.copy_and_resolve_references()
  cfg.data.build_synthetic = False
  name = "synthetic_precision_fda"
  rt = runtime.Runtime(cfg)
  params, step = rt.restore_params(workdir)
  shared = dict(task_names=[name], params=params, step=step, runtime=rt,
                evaluator=evaluation.Evaluator(rt, runtime.prepare_data(cfg)[1]))
  subsample = evaluation.evaluate(cfg, workdir, **shared)["tasks"][name]
  assert subsample["truth_snp_f1"].startswith("skipped: scores 8 of the 150 candidates")
  assert "margin_ci95" not in subsample

  cfg.eval.max_examples_per_task = None  # every candidate of the split
  cfg.eval.bootstrap = 20
  whole = evaluation.evaluate(cfg, workdir, **shared)["tasks"][name]
  # Every simulated variant has a candidate: against the truth set the figures are the same.
  for kind in ("snp", "indel"):
    assert whole[f"truth_{kind}_f1"] == whole[f"{kind}_f1"]
    assert whole["baseline"][f"truth_{kind}_f1"] == whole["baseline"][f"{kind}_f1"]
  assert set(whole["margin_ci95"]) == {"snp_f1", "indel_f1"}  # resampling has no truth set

  # The same data, but its truth set holds one more SNP that no candidate was made for.
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  for entry in os.listdir(synthetic_data_dir):
    if entry != name:
      os.symlink(os.path.join(synthetic_data_dir, entry), data_dir / entry)
  built = shutil.copytree(os.path.join(synthetic_data_dir, name), data_dir / name)
  (metadata_path,) = built.glob("*/metadata.json")
  metadata = json.loads(metadata_path.read_text())
  metadata["truth_set"]["test"]["without_example"].append(["chr1", 7, "A", "G", 1])
  metadata_path.write_text(json.dumps(metadata))
  cfg.data.data_dir = str(data_dir)
  missed = evaluation.evaluate(cfg, workdir, **shared)["tasks"][name]
  for metric in ("snp_f1", "indel_f1", "truth_indel_f1"):
    assert missed[metric] == whole[metric] and missed["baseline"][metric] == whole["baseline"][metric]
  # The baseline's constant call has true positives, so one more false negative lowers its F1.
  assert missed["baseline"]["truth_snp_f1"] < whole["baseline"]["truth_snp_f1"]
  assert missed["truth_snp_f1"] <= whole["truth_snp_f1"]
  table = evaluation.format_table({"step": step, "split": "test", "tasks": {name: missed}})
  assert "truth_snp_f1" in table and "truth_indel_f1" in table
