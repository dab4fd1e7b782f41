"""Hand-checked parsing of multiple-choice answers (medpalm_m.metrics.choice)."""

from __future__ import annotations

import pytest

from medpalm_m import metrics as M


DERM = ["Actinic Keratosis", "Basal Cell Carcinoma", "Melanoma"]


@pytest.mark.parametrize(
    "answer",
    ["(B)", "B", "B.", "b", " (b) ", "B)", "(B) Basal Cell Carcinoma", "B. Basal cell carcinoma",
     "Basal Cell Carcinoma.", "basal cell carcinoma", "  BASAL   CELL CARCINOMA  ", "The answer is (B).",
     "Basal cell carcinoma, most likely"],
)  # fmt: skip
def test_parse_choice_accepts_all_formats(answer):
  assert M.parse_choice(answer, DERM) == 1


@pytest.mark.parametrize(
    "answer",
    ["", "   ", "(D)", "D", "Squamous cell carcinoma", "A basal cell lesion", "(A) 0 (B) 1 (C) 2", "Basal"],
)
def test_parse_choice_none_when_nothing_matches(answer):
  # "(D)" is out of range for 3 options; "A basal ..." starts with the article, not a
  # letter marker; echoing the whole option list is ambiguous; "Basal" is a partial text.
  assert M.parse_choice(answer, DERM) is None


def test_parse_choice_letter_wins_and_longest_text_wins():
  assert M.parse_choice("(A) Basal Cell Carcinoma", DERM) == 0  # letter is the choice
  cbis = ["Benign", "Benign without callback", "Malignant"]
  assert M.parse_choice("benign without callback, probably", cbis) == 1
  assert M.parse_choice("Benign.", cbis) == 0
  # Genotype prompts: "(A) 0 (B) 1 (C) 2", target "1."
  assert M.parse_choice("1.", ["0", "1", "2"]) == 1
  assert M.parse_choice("(C) 2", ["0", "1", "2"]) == 2
  assert M.parse_choice("10", ["0", "1", "2"]) is None
