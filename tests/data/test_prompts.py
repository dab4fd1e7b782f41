"""The paper's instruction and answer format (medpalm_m.data.prompts)."""

from __future__ import annotations

import re

import pytest

from medpalm_m.data import prompts, tasks


def test_answers_end_with_one_full_stop():
  assert [prompts.answer(a) for a in ("Yes", "Nevus", "1", " Basal Cell Carcinoma ", "Normal.", "是")] == \
      ["Yes.", "Nevus.", "1.", "Basal Cell Carcinoma.", "Normal.", "是."]


def test_every_instruction_begins_as_the_papers():
  names = [name for name in dir(prompts) if name.endswith("_INSTRUCTION")]
  assert len(names) >= 15
  for name in names:
    assert getattr(prompts, name).startswith("Instructions: You are") or \
        re.match(r"Instructions: The following are ", getattr(prompts, name)), name


def test_option_targets_are_the_options_in_the_answer_format():
  assert tasks.get("mimic_cxr_classification").option_targets() == ("No.", "Yes.")
  assert tasks.get("precision_fda").option_targets() == ("0.", "1.", "2.")
  with pytest.raises(ValueError, match="has no options"):
    tasks.get("mimic_iii").option_targets()
