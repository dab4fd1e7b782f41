"""PubMedQA PQA-L (1,000 expert-labelled questions) with the official 500-question test split.

On disk (Jin et al. 2019, github.com/pubmedqa/pubmedqa, MIT): `ori_pqal.json`, one JSON object
mapping PMID -> `{"QUESTION", "CONTEXTS": [str], "LABELS": [str], "MESHES": [str], "YEAR",
"reasoning_required_pred", "reasoning_free_pred", "final_decision": "yes"|"no"|"maybe",
"LONG_ANSWER"}`. Optional: the repository's `test_ground_truth.json` (PMID -> answer).

The test split is the one the paper (and every PubMedQA result) uses: the 500 PMIDs of the
release's `test_ground_truth.json` (276 yes / 169 no / 55 maybe). Where that file is in the
manual directory it is the test split, PMIDs and answers: each of its PMIDs must be in
`ori_pqal.json`. Without it, `official_test_pmids` recomputes the split as the dataset's own
`preprocess/split_dataset.py pqal` writes it to `test_set.json`: PMIDs grouped by
`final_decision` in file order, groups yes, no, maybe each shuffled
with Python's `random` seeded 0 and cut into halves (the first ceil(n/2) to the first half), then
one randomly chosen PMID moves from the first half to the second when the halves differ in size;
the second half is the test set. On the real `ori_pqal.json` this gives the 500 keys of
`test_ground_truth.json` in the same order. The other 500 PMIDs (the script's 10 CV folds) form
the train split, used only for the one-shot exemplar: PubMedQA is evaluation-only (not in the
paper's mixture).
"""

from __future__ import annotations

import math
import os
import random
from typing import Iterator, Mapping, Sequence

import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base

from medpalm_m.data.tokenizer import escape_image_markers

SOURCE_FILE = "ori_pqal.json"
GROUND_TRUTH_FILE = "test_ground_truth.json"


def official_test_pmids(final_decisions: Mapping[str, str]) -> list[str]:
  """The 500-question test split of `split_dataset.py pqal` (see the module docstring).

  `final_decisions` maps PMID -> yes/no/maybe in the order of `ori_pqal.json`.
  """
  rng = random.Random(0)  # the script seeds the global generator with 0 and draws in this order
  by_label: dict[str, list[str]] = {label: [] for label in ("yes", "no", "maybe")}
  for pmid, decision in final_decisions.items():
    by_label[decision].append(pmid)
  halves: list[list[str]] = [[], []]
  for pmids in by_label.values():
    rng.shuffle(pmids)
    size = math.ceil(len(pmids) / 2)
    halves[0] += pmids[:size]
    halves[1] += pmids[size:]
  if len(halves[1]) != len(halves[0]):
    picked = rng.choice(halves[0])
    halves[0].remove(picked)
    halves[1].append(picked)
  return halves[1]


class Pubmedqa(base.ManualBuilder):
  """PQA-L questions with their abstract (without its conclusion) and yes/no/maybe answer."""

  DESCRIPTION = "PubMedQA PQA-L: yes/no/maybe research questions answered from a PubMed abstract."
  HOMEPAGE = "https://pubmedqa.github.io (data: github.com/pubmedqa/pubmedqa, data/ori_pqal.json)"
  OBTAIN = ("Clone or download github.com/pubmedqa/pubmedqa and use its data/ folder (ori_pqal.json; "
            "test_ground_truth.json is the test split when present) as the manual directory.")
  REQUIRED_FILES = (SOURCE_FILE,)
  CITATION = ("Jin et al., PubMedQA: A Dataset for Biomedical Research Question Answering, "
              "EMNLP 2019.")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # PMID
        "question": tfds.features.Text(),
        "context": tfds.features.Text(),  # the abstract's CONTEXTS, joined
        "label": tfds.features.ClassLabel(names=prompts.PUBMEDQA_OPTIONS),
        "long_answer": tfds.features.Text(),  # the abstract's conclusion
    })

  def generate_splits(self, manual_dir: str):
    path = os.path.join(manual_dir, SOURCE_FILE)
    items = list(self.json_items(path))
    decisions: dict[str, str] = {}
    for line, pmid, entry in items:
      decision = entry.get("final_decision") if isinstance(entry, dict) else None
      if decision not in prompts.PUBMEDQA_OPTIONS:
        # Never skippable: the split is computed from every record's answer, so dropping one
        # would move other questions between train and test.
        raise base.MalformedRecordError(path, line, f"final_decision {decision!r} is not yes/no/maybe; "
                                        "the test split cannot be computed", entry=f"PMID {pmid}")
      decisions[str(pmid)] = decision
    truth = self._ground_truth(manual_dir, decisions)
    test = set(truth) if truth is not None else set(official_test_pmids(decisions))
    return {"train": self._records(path, items, lambda pmid: pmid not in test),
            "test": self._records(path, items, lambda pmid: pmid in test, answers=truth)}

  def _ground_truth(self, manual_dir: str, decisions: Mapping[str, str]) -> dict[str, str] | None:
    """PMID -> answer of the release's test set, or None where the file is absent."""
    truth_path = os.path.join(manual_dir, GROUND_TRUTH_FILE)
    if not os.path.exists(truth_path):
      return None
    truth = {}
    for line, pmid, answer in self.json_items(truth_path):
      # Never skippable: the file is the test split, and a question dropped from it would change
      # what the paper's 500 questions are.
      if answer not in prompts.PUBMEDQA_OPTIONS:
        raise base.MalformedRecordError(truth_path, line, f"answer {answer!r} is not yes/no/maybe",
                                        entry=f"PMID {pmid}")
      if str(pmid) not in decisions:
        raise base.MalformedRecordError(truth_path, line, f"PMID {pmid} is not in {SOURCE_FILE}; use the "
                                        "ori_pqal.json of the same PubMedQA release", entry=f"PMID {pmid}")
      truth[str(pmid)] = answer
    return truth

  def _records(self, path: str, items: Sequence[tuple[int, str, dict]], keep,
               answers: Mapping[str, str] | None = None) -> Iterator[base.KeyedRecord]:
    """Records of the PMIDs `keep` admits; their answer from `answers` where given (the release's
    test set), else the entry's final_decision."""
    for line, pmid, entry in items:
      if not keep(str(pmid)):
        continue
      with self.record_at(path, line, entry=f"PMID {pmid}"):
        contexts = entry["CONTEXTS"]
        if not isinstance(contexts, list) or not contexts:
          raise ValueError(f"CONTEXTS must be a non-empty list of strings, found {contexts!r:.80}")
        yield str(pmid), {"id": str(pmid), "question": str(entry["QUESTION"]).strip(),
                          "context": " ".join(str(c).strip() for c in contexts),
                          "label": prompts.PUBMEDQA_OPTIONS.index(
                              answers[str(pmid)] if answers is not None else entry["final_decision"]),
                          "long_answer": str(entry.get("LONG_ANSWER", ""))}


def format_pubmedqa(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  """Instruction, one answered exemplar (text only), then "Context: .. Question: .. (A) yes (B) no (C) maybe Answer:"."""

  def block(r: tasks.Record) -> str:
    return escape_image_markers(f"Context: {tasks.text(r['context'])} Question: {tasks.text(r['question'])} "
                                f"{prompts.option_list(prompts.PUBMEDQA_OPTIONS)} Answer:")

  parts = [prompts.PUBMEDQA_INSTRUCTION]
  for exemplar in exemplars:
    parts += [block(exemplar), prompts.answer(prompts.PUBMEDQA_OPTIONS[int(exemplar["label"])])]
  parts.append(block(record))
  label = int(record["label"])
  return {"id": tasks.text(record["id"]), "task": "pubmedqa", "images": [], "prompt": " ".join(parts),
          "target": prompts.answer(prompts.PUBMEDQA_OPTIONS[label]), "label": label}


PUBMEDQA = tasks.register(tasks.Task(
    name="pubmedqa", builder=Pubmedqa, formatter=format_pubmedqa, metrics=("accuracy",),
    options=prompts.PUBMEDQA_OPTIONS, num_exemplars=1, paper_task="PubMedQA"))
