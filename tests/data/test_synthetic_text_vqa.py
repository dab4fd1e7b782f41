"""Synthetic QA, summarization and VQA tasks: real TFDS builds, read back and formatted.

Checks that each task's examples have the paper's prompt form, that builds are deterministic,
that test never repeats train, and that every answer is a function of the input (the fact base,
the abstract, the findings, the image) that a simple model can pick up, and of nothing else.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import itertools
import pathlib
import re
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from medpalm_m.data import preprocess, prompts, tasks
from medpalm_m.data.synthetic import medical_qa, summarization, vqa
from medpalm_m.data.tokenizer import ESCAPED_IMAGE_MARKER, count_image_markers, split_on_image_markers
from tests.conftest import shared_directory

QA_TASKS = (medical_qa.MEDQA, medical_qa.MEDMCQA)
VQA_TASKS = (vqa.VQA_RAD, vqa.SLAKE, vqa.PATH_VQA)
ALL_TASKS = QA_TASKS + (medical_qa.PUBMEDQA, summarization.MIMIC_III) + VQA_TASKS
INSTRUCTIONS = {
    "synthetic_medqa": prompts.SYNTHETIC_MEDQA_INSTRUCTION,
    "synthetic_medmcqa": prompts.SYNTHETIC_MEDQA_INSTRUCTION,
    "synthetic_pubmedqa": prompts.PUBMEDQA_INSTRUCTION,
    "synthetic_mimic_iii": prompts.SYNTHETIC_MIMIC_III_INSTRUCTION,
    "synthetic_vqa_rad": prompts.SYNTHETIC_VQA_INSTRUCTION,
    "synthetic_slake": prompts.SYNTHETIC_VQA_INSTRUCTION,
    "synthetic_path_vqa": prompts.SYNTHETIC_VQA_INSTRUCTION,
}
ids = pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.name)


class Built:
  """One task's builder, prepared by TFDS under a temporary data_dir, and its records read back."""

  def __init__(self, task: tasks.Task, data_dir: pathlib.Path):
    with open(data_dir / f"{task.name}.lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # one pytest-xdist worker builds, the others reuse it
      # Made under the lock: a builder reads the dataset's info when it is made.
      self.builder = task.builder(data_dir=str(data_dir), seed=0)
      if not self.builder.is_prepared():
        self.builder.download_and_prepare()
    self.records = {split: list(self.builder.as_data_source(split)) for split in ("train", "test")}

  def examples(self, task: tasks.Task, split: str, limit: int | None = None) -> list[tasks.Example]:
    train = self.records["train"]
    out = []
    for i, record in enumerate(self.records[split][:limit]):
      # Any train records other than the example itself serve as exemplars, like the pipeline's.
      exemplars = [train[(i + 1 + k) % len(train)] for k in range(task.num_exemplars)]
      out.append(task.formatter(record, exemplars))
    return out


class _BuildOnFirstUse(dict):
  def __init__(self, data_dir: pathlib.Path):
    super().__init__()
    self.data_dir = data_dir

  def __missing__(self, name: str) -> Built:
    self[name] = Built(tasks.get(name), self.data_dir)
    return self[name]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Built]:
  """Task name -> its build, made once per test run when a test first asks for it."""
  data_dir = shared_directory(tmp_path_factory) / "synthetic_text_vqa_tfds"
  data_dir.mkdir(exist_ok=True)
  return _BuildOnFirstUse(data_dir)


def _words(prompt: str) -> int:
  return len(" ".join(split_on_image_markers(prompt)).split())


@ids
def test_registered_with_paper_setup(task: tasks.Task):
  assert tasks.get(task.name) is task
  expected = {
      "synthetic_medqa": ("MedQA", ("accuracy",), 2), "synthetic_medmcqa": ("MedMCQA", ("accuracy",), 2),
      "synthetic_pubmedqa": ("PubMedQA", ("accuracy",), 0),
      "synthetic_mimic_iii": ("MIMIC-III", ("rouge_l", "bleu4", "f1_radgraph"), 0),
      "synthetic_vqa_rad": ("VQA-RAD", ("bleu1", "token_f1"), 1),
      "synthetic_slake": ("Slake-VQA", ("bleu1", "token_f1"), 1),
      "synthetic_path_vqa": ("Path-VQA", ("bleu1", "token_f1"), 1),
  }[task.name]
  assert (task.paper_task, task.metrics, task.num_exemplars) == expected


@ids
def test_examples_have_the_paper_prompt_form(task: tasks.Task, built):
  data = built[task.name]
  assert {s: len(r) for s, r in data.records.items()} == data.builder.SPLIT_SIZES
  for example, record in zip(data.examples(task, "test", limit=60), data.records["test"]):
    assert set(example) >= {"id", "task", "images", "prompt", "target"}
    assert example["task"] == task.name and example["id"] == tasks.text(record["id"])
    prompt, target = example["prompt"], example["target"]
    assert prompt.startswith("Instructions: ") and prompt.startswith(INSTRUCTIONS[task.name])
    assert target.endswith(".")  # the paper's answer format
    assert count_image_markers(prompt) == len(example["images"])
    assert _words(prompt) <= 85 and 1 <= len(target.split()) <= 25, (prompt, target)
    if task in VQA_TASKS:
      (image,) = example["images"]
      assert image.dtype == np.uint8 and image.ndim == 3
      assert image.shape[2] == task.builder.CHANNELS and all(96 <= s <= 192 for s in image.shape[:2])
      # The exemplar's image is the literal text, never a second image slot.
      assert prompt.count(f"Given {ESCAPED_IMAGE_MARKER}. Q: ") == 1
      assert prompt.endswith(f"Given <img>. Q: {tasks.text(record['question'])} A:")
      assert target == tasks.text(record["answer"]) + "."  # the paper's answer format
    else:
      assert example["images"] == [] and ESCAPED_IMAGE_MARKER not in prompt
    if task in QA_TASKS:
      options = [tasks.text(o) for o in record["options"]]
      assert len(set(options)) == 4 and prompts.option_list(options) in prompt
      assert prompt.count("Answer:") == 3 and prompt.endswith("Answer:")  # 2 exemplars + query
      assert target == options[example["label"]] + "."  # the option's text, as in the paper
    if task is medical_qa.PUBMEDQA:
      assert "(A) yes (B) no (C) maybe" in prompt
      assert target == task.options[example["label"]] + "." == task.option_targets()[example["label"]]


@ids
def test_builds_are_deterministic_per_seed(task: tasks.Task, built, tmp_path):
  data = built[task.name]
  by_id = {tasks.text(r["id"]): r for r in data.records["train"]}
  # A second build of the same seed: `records` is exactly what download_and_prepare writes.
  again = task.builder(data_dir=str(tmp_path), seed=0)
  for record in itertools.islice(again.records("train"), 300):
    _assert_same(record, by_id[record["id"]])
  other = task.builder(data_dir=str(tmp_path), seed=1)
  differs = [_key(task, r) != _key(task, by_id[r["id"]])
             for r in itertools.islice(other.records("train"), 50)]
  assert np.mean(differs) > 0.8


def _assert_same(generated: dict[str, Any], stored: dict[str, Any]) -> None:
  assert set(generated) == set(stored)
  for key, value in generated.items():
    if isinstance(value, np.ndarray):
      np.testing.assert_array_equal(value, stored[key])
    elif isinstance(value, list):
      assert [tasks.text(v) for v in stored[key]] == value
    else:
      assert (tasks.text(stored[key]) if isinstance(value, str) else stored[key]) == value


def _key(task: tasks.Task, record: dict[str, Any]) -> str:
  """What the model sees of an example without exemplars: the prompt text and the image bytes."""
  example = task.formatter(record, [])
  digest = hashlib.sha1(example["prompt"].encode())
  for image in example["images"]:
    digest.update(np.ascontiguousarray(image).tobytes())
  return digest.hexdigest()


@ids
def test_test_split_never_repeats_train(task: tasks.Task, built):
  data = built[task.name]
  train_keys = {_key(task, r) for r in data.records["train"]}
  assert not [r["id"] for r in data.records["test"] if _key(task, r) in train_keys]


# What makes each answer: the fact base, the abstract, the findings, the image -----------------

def _subject(question: str) -> str:
  (subject,) = [s for s in medical_qa.FACTS if re.search(rf"\b{re.escape(s)}\b", question)]
  return subject


@pytest.mark.parametrize("task", QA_TASKS, ids=lambda t: t.name)
def test_qa_answers_follow_the_fact_base(task: tasks.Task, built):
  data = built[task.name]
  # A lookup learned from the train split alone (key entity -> answer) recovers every test answer.
  learned = {}
  for record in data.records["train"]:
    options = [tasks.text(o) for o in record["options"]]
    learned.setdefault(_subject(tasks.text(record["question"])), set()).add(options[record["label"]])
  assert all(len(answers) == 1 for answers in learned.values())
  assert len(learned) == len(medical_qa.FACTS)  # every fact is taught
  for example, record in zip(data.examples(task, "test"), data.records["test"]):
    subject = _subject(tasks.text(record["question"]))
    relation, answer = medical_qa.FACTS[subject]
    options = [tasks.text(o) for o in record["options"]]
    assert learned[subject] == {answer} and example["target"] == answer + "."
    # Distractors are answers of the same relation, so the option type gives nothing away.
    assert set(options) <= set(next(r for r in medical_qa.RELATIONS if r.name == relation).answers)
  labels = collections.Counter(r["label"] for r in data.records["train"])
  assert min(labels.values()) > 0.2 * len(data.records["train"])  # no favoured letter


def _verdict(sentence: str) -> str:
  (answer,) = [a for a, phrases in medical_qa.VERDICTS.items() if any(p in sentence for p in phrases)]
  return answer


def test_pubmedqa_answer_is_the_verdict_on_the_asked_drug(built):
  data = built[medical_qa.PUBMEDQA.name]
  distractor_disagrees = []
  for example in data.examples(medical_qa.PUBMEDQA, "test"):
    context = re.search(r"Context: (.*) Question:", example["prompt"]).group(1)
    question = re.search(r"Question: (.*?) \(A\)", example["prompt"]).group(1)
    drug = next(d for d in medical_qa.RELATIONS[0].answers if d in question)
    results = [s for s in re.findall(r"[^.]+\.", context) if "Treatment with" in s]
    (asked,) = [s for s in results if drug in s]
    (other,) = [s for s in results if drug not in s]
    assert example["target"] == _verdict(asked) + "."
    distractor_disagrees.append(_verdict(other) + "." != example["target"])
  # Reading the wrong result sentence would be wrong most of the time.
  assert np.mean(distractor_disagrees) > 0.5
  answers = collections.Counter(int(r["label"]) for r in data.records["train"])
  assert min(answers.values()) > 0.2 * len(data.records["train"])


def test_impression_is_derived_from_the_findings(built):
  data = built[summarization.MIMIC_III.name]
  normal = 0
  for example in data.examples(summarization.MIMIC_III, "test"):
    findings = re.search(r"Given the findings: (.*) Q: Summarize the findings\. A:$", example["prompt"]).group(1)
    sentences = re.findall(r"[^.]+\.", findings)
    assert 2 <= len(sentences) <= 5
    assert example["target"] == summarization.impression(findings)
    abnormal = [s for s in sentences
                if not any(s.strip() in f.normal for fs in summarization.EXAMS.values() for f in fs)]
    if abnormal:
      assert len(re.findall(r"[^.]+\.", example["target"])) == len(abnormal)
    else:
      normal += 1
      assert example["target"] == summarization.NORMAL_IMPRESSION
  # Keeping test apart from train must not thin out the (low-variety) all-normal reports.
  train_normal = np.mean([tasks.text(r["impression"]) == summarization.NORMAL_IMPRESSION
                          for r in data.records["train"]])
  assert 0.15 < train_normal < 0.5 and abs(normal / len(data.records["test"]) - train_normal) < 0.12


def _image_features(image: np.ndarray) -> np.ndarray:
  """What a glance at the model's 64x64 input gives: a 16x16 thumbnail and a brightness histogram."""
  x = preprocess.resize_with_pad(preprocess.to_rgb(image), 64).astype(np.float32) / 255.0
  thumbnail = x.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
  histogram = np.histogram(x.mean(axis=-1), bins=32, range=(0.0, 1.0))[0] / x[..., 0].size
  return np.concatenate([thumbnail.ravel(), histogram])


@pytest.mark.parametrize("task", VQA_TASKS, ids=lambda t: t.name)
def test_vqa_answers_come_from_the_image(task: tasks.Task, built):
  data = built[task.name]
  train, test = data.records["train"], data.records["test"]
  rng = np.random.default_rng(0)
  correct = shuffled = majority = by_question = 0
  for qtype in task.builder.QUESTION_TYPES:
    tr = [r for r in train if tasks.text(r["question_type"]) == qtype.name]
    te = [r for r in test if tasks.text(r["question_type"]) == qtype.name]
    y = np.array([tasks.text(r["answer"]) for r in tr])
    y_test = np.array([tasks.text(r["answer"]) for r in te])
    assert set(y) == set(qtype.answers)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    with threadpool_limits(limits=1):  # threaded BLAS on these tiny problems is ~100x slower
      model.fit(np.stack([_image_features(r["image"]) for r in tr]), y)
    x_test = np.stack([_image_features(r["image"]) for r in te])
    hits = model.predict(x_test) == y_test
    base = np.mean(y_test == collections.Counter(y).most_common(1)[0][0])
    assert hits.mean() > base + 0.15, (qtype.name, hits.mean(), base)
    correct += hits.sum()
    majority += base * len(te)
    shuffled += (model.predict(x_test[rng.permutation(len(te))]) == y_test).sum()
    # Without the image, the question's wording is all there is: its majority answer is no better.
    per_question = collections.defaultdict(collections.Counter)
    for r, answer in zip(tr, y):
      per_question[tasks.text(r["question"])][answer] += 1
    by_question += sum(per_question[tasks.text(r["question"])].most_common(1)[0][0] == a
                       for r, a in zip(te, y_test))
  n = len(test)
  assert correct / n > majority / n + 0.35
  assert shuffled / n < majority / n + 0.1
  assert by_question / n < majority / n + 0.1
