"""Multiple-choice answer parsing: a generated answer back to the index of an option.

An answer that matches no option is wrong (never dropped); a gold answer that matches none is a
data bug and raises.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import numpy as np

from medpalm_m.data.prompts import OPTION_LETTERS


_TRAILING = ".,;:!?\u3002\uff0c\uff1b\uff1a\uff01\uff1f \t\n\"'"
_LETTER_ONLY = re.compile(r"^\(?([a-z])\)?[.:]?$")
# "(b) yes", "b) yes", "b. yes", "b: yes"; a bare "a " is NOT a letter (it is the article).
_LETTER_PREFIX = re.compile(r"^(?:\(([a-z])\)|([a-z])[).:])(?:\s+|$)")
_LETTER_PAREN = re.compile(r"\(([a-z])\)")


def _option_index(letter: str) -> int:
  # Answers are casefolded before matching; the prompts letter options in upper case.
  return OPTION_LETTERS.index(letter.upper())


def normalize_choice(text: str) -> str:
  text = unicodedata.normalize("NFKC", text).casefold()
  text = " ".join(text.split())
  return text.strip(_TRAILING).strip()


def parse_choice(prediction: str, options: Sequence[str]) -> int | None:
  """Map a generated multiple-choice answer to the index of an option, or None.

  Options are lettered A, B, C, ... in the given order. Tried in order, all case,
  whitespace and trailing-punctuation insensitive:

  1. the whole answer is an option's text ("Basal Cell Carcinoma.");
  2. the whole answer is a letter: "B", "B.", "(B)", "B)";
  3. the answer starts with a letter marker: "(B) Yes", "B) Yes", "B. Yes", "B: Yes".
     The letter wins over any text after it, because the prompts list options as
     "(A) ... (B) ..." and the model's letter is its actual choice (unless other
     "(X)" markers follow, as when the model echoes the option list);
  4. exactly one distinct in-range "(X)" occurs anywhere ("The answer is (C).");
     several distinct ones (the model echoing the option list) is ambiguous;
  5. the answer starts with an option's text followed by a non-alphanumeric
     character ("Yes, because ..."); the longest such option wins, so
     "benign without callback" is not read as "benign".

  Returns None when nothing matches; callers count that as a wrong answer.
  """
  pred = normalize_choice(prediction)
  if not pred or not options:
    return None
  opts = [normalize_choice(o) for o in options]
  n = len(opts)

  if pred in opts:
    return opts.index(pred)

  m = _LETTER_ONLY.match(pred)
  if m and _option_index(m.group(1)) < n:
    return _option_index(m.group(1))

  paren = {i for i in (_option_index(x) for x in _LETTER_PAREN.findall(pred)) if i < n}
  m = _LETTER_PREFIX.match(pred)
  if m:
    idx = _option_index(m.group(1) or m.group(2))
    if idx < n and paren <= {idx}:
      return idx

  if len(paren) == 1:
    return paren.pop()

  best: int | None = None
  for i, opt in enumerate(opts):
    if opt and pred.startswith(opt) and not pred[len(opt)].isalnum():
      if best is None or len(opt) > len(opts[best]):
        best = i
  return best


def parse_targets(targets: Sequence[str], options: Sequence[str], metric: str) -> np.ndarray:
  idx = []
  for t in targets:
    i = parse_choice(t, options)
    if i is None:
      # A gold answer outside the option list is a data bug, not a model error.
      raise ValueError(f"{metric}: target {t!r} matches none of the options {list(options)}")
    idx.append(i)
  return np.asarray(idx, dtype=int)


def parse_predictions(predictions: Sequence[str], options: Sequence[str]) -> np.ndarray:
  # -1 is outside labels=range(K): an unparseable answer is a miss for its true class.
  return np.asarray([(-1 if (i := parse_choice(p, options)) is None else i) for p in predictions], dtype=int)
