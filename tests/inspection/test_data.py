"""Data views: pileup channels recovered exactly, token counts and truncation flags."""

import dataclasses

import numpy as np
import pytest

from medpalm_m.data import genomics, pipeline
from medpalm_m.inspection import data
from medpalm_m.inspection.workdir import Workdir


def test_pileup_channels_undo_pileup_to_rgb():
  channels = np.random.default_rng(0).integers(0, 255, (100, 221, 6), dtype=np.uint8)
  np.testing.assert_array_equal(data.pileup_channels(genomics.pileup_to_rgb(channels)), channels)
  with pytest.raises(ValueError, match="224, 224, 3"):
    data.pileup_channels(np.zeros((64, 64, 3), np.uint8))


def test_token_statistics_count_what_the_preprocessor_cuts(evaluated_workdir, synthetic_data_dir):
  run = Workdir.locate(evaluated_workdir, synthetic_data_dir)
  examples = list(pipeline.first_examples(run.mixture(), run.data_dir, 12))
  spec = run.sequence_spec()
  full = data.token_statistics(examples, run.tokenizer(), spec)
  assert not any(r["prompt_truncated"] or r["target_truncated"] or r["dropped"] for r in full)
  longest_text = max(r["prompt_text_tokens"] for r in full if not r["image_tokens"])
  tight = dataclasses.replace(spec, max_prompt_tokens=longest_text - 1, max_target_tokens=1)
  cut = data.token_statistics(examples, run.tokenizer(), tight)
  for before, after in zip(full, cut):
    assert before["prompt_text_tokens"] == after["prompt_text_tokens"]  # counts are before any cut
    assert after["prompt_truncated"] == (before["prompt_text_tokens"] + before["image_tokens"]
                                         > tight.max_prompt_tokens and not after["dropped"])
    assert after["target_truncated"] == (before["target_tokens"] > 2 and not after["dropped"])
  assert any(r["prompt_truncated"] for r in cut)
  table = data.truncation_table(cut, tight)
  assert "synthetic_medqa" in table and f"layout: {tight.max_prompt_tokens} prompt tokens" in table
