"""The zero-shot analogs: evaluation-only builders whose concept or layout training never shows."""

import dataclasses

import numpy as np

from configs.mixtures import synthetic as synthetic_mixture
from medpalm_m.data import pipeline, tasks, tokenizer
from medpalm_m.data.synthetic import chest_xray, zero_shot


def test_the_tb_cavity_is_drawn_in_an_upper_zone_and_nothing_else_changes():
  # Before exposure (gamma), which takes its draw after the lesion's: the whole film differs there.
  findings, size = chest_xray.Findings(cardiomegaly=True), (100, 96)
  plain = np.asarray(chest_xray._draw_frontal(np.random.default_rng(3), size, findings, "PA"))
  tuberculous = np.asarray(chest_xray._draw_frontal(
      np.random.default_rng(3), size, dataclasses.replace(findings, tuberculosis="right"), "PA"))
  changed = np.argwhere(plain != tuberculous)
  assert len(changed) > 50
  assert changed[:, 0].max() < plain.shape[0] * 0.55  # rows of the upper lung zone only
  assert changed[:, 1].mean() < plain.shape[1] / 2  # the patient's right is the image's left


def test_tuberculosis_is_a_concept_no_training_task_shows_or_names(synthetic_data_dir):
  trained = [tasks.get(name) for name in synthetic_mixture.MIXTURE]
  assert all(t.builder is not zero_shot.SyntheticTbZeroShot for t in trained)
  for task in (t for t in trained if t.builder is chest_xray.SyntheticMimicCxr):
    source = pipeline.TaskSource(task, "train", synthetic_data_dir)
    assert not any("tuberculosis" in source[i]["prompt"].lower() for i in range(0, len(source), 40))
  for name in ("synthetic_tb_zero_shot", "synthetic_tb_zero_shot_cot", "synthetic_mimic_cxr_two_view"):
    assert "train" not in tasks.get(name).splits  # no mixture can train on them


def test_the_tb_analog_is_balanced_and_asked_with_a_text_only_exemplar(synthetic_data_dir):
  source = pipeline.TaskSource(tasks.get("synthetic_tb_zero_shot"), "test", synthetic_data_dir)
  labels = [source[i]["label"] for i in range(len(source))]
  assert len(labels) == 200 and 80 <= sum(labels) <= 120
  example = source[0]
  assert example["prompt"].count(tokenizer.ESCAPED_IMAGE_MARKER) == 1 and len(example["images"]) == 1
  assert example["target"] in ("No.", "Yes.")


def test_the_two_view_analog_draws_one_study_frontal_and_lateral(synthetic_data_dir):
  builder = zero_shot.SyntheticMimicCxrTwoView(data_dir=synthetic_data_dir)
  record = builder.as_data_source("test")[0]
  assert record["frontal_view"].decode() in ("PA", "AP")
  assert record["frontal_image"].shape != record["lateral_image"].shape or not np.array_equal(
      record["frontal_image"], record["lateral_image"])
  source = pipeline.TaskSource(tasks.get("synthetic_mimic_cxr_two_view"), "test", synthetic_data_dir)
  example = source[0]
  assert len(example["images"]) == 2 and "Given the LATERAL view X-ray image <img>." in example["prompt"]
  assert example["target"] == record["findings"].decode()
  assert source.exemplar_indices(0) != [0]  # the exemplar is another study
