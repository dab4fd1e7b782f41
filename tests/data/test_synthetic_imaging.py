"""Synthetic imaging tasks (chest X-ray, dermatology, mammography, genomics): real TFDS builds.

Each builder is prepared by TFDS under a temporary data_dir and read back with `as_data_source`.
The tests check the paper's prompt forms, that builds are deterministic for a seed, that test
never repeats train, and that every label is a function of the image: a logistic regression on a
16x16 thumbnail (or on the pileup's centre columns) beats the majority class clearly, and falls
back to about the majority class when the images are shuffled across examples.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any, Callable

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from medpalm_m.data import genomics as genomics_lib
from medpalm_m.data import preprocess, prompts, tasks
from medpalm_m.data.synthetic import chest_xray, dermatology, genomics, mammography
from medpalm_m.data.tokenizer import ESCAPED_IMAGE_MARKER, count_image_markers, split_on_image_markers

CXR_REPORT, CXR_CLASSIFICATION = chest_xray.REPORT_TASK, chest_xray.CLASSIFICATION_TASK
CLASSIFICATION_TASKS = (CXR_CLASSIFICATION, dermatology.TASK, mammography.VINDR_TASK,
                        mammography.CBIS_MASS_TASK, mammography.CBIS_CALC_TASK, genomics.TASK)
ALL_TASKS = (CXR_REPORT,) + CLASSIFICATION_TASKS
ids = pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.name)
classification_ids = pytest.mark.parametrize("task", CLASSIFICATION_TASKS, ids=lambda t: t.name)

# Channels and side limits of each builder's images.
IMAGE_SPECS = {
    "synthetic_mimic_cxr": (1, 96, 224),
    "synthetic_pad_ufes_20": (3, 96, 224),
    "synthetic_vindr_mammo": (1, 96, 224),
    "synthetic_cbis_ddsm_mass": (1, 96, 224),
    "synthetic_cbis_ddsm_calc": (1, 96, 224),
    "synthetic_precision_fda": (3, 224, 224),
}


class Built:
  """One builder prepared by TFDS under a temporary data_dir, with its records read back."""

  def __init__(self, builder_cls: type, data_dir: str):
    self.builder = builder_cls(data_dir=data_dir, seed=0)
    self.builder.download_and_prepare()
    self.records: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "test"):
      source = self.builder.as_data_source(split)
      # TFDS shuffles on write; the id's index restores generation order.
      records = [source[i] for i in range(len(source))]
      self.records[split] = sorted(records, key=lambda r: int(tasks.text(r["id"]).rsplit("-", 1)[1]))

  def examples(self, task: tasks.Task, split: str) -> list[tasks.Example]:
    train = self.records["train"]
    out = []
    for i, record in enumerate(self.records[split]):
      # Other train records serve as exemplars, as the pipeline draws them.
      exemplars = [train[(i + 1 + k) % len(train)] for k in range(task.num_exemplars)]
      out.append(task.formatter(record, exemplars))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Callable[[tasks.Task], Built]:
  cache: dict[type, Built] = {}

  def get(task: tasks.Task) -> Built:
    if task.builder not in cache:  # the two CXR tasks share one build
      cache[task.builder] = Built(task.builder, str(tmp_path_factory.mktemp(task.builder.name)))
    return cache[task.builder]

  return get


def _words(text: str) -> int:
  return len(" ".join(split_on_image_markers(text)).split())


@ids
def test_registered_with_paper_setup(task: tasks.Task):
  assert tasks.get(task.name) is task
  expected = {  # (num_exemplars, paper_task)
      "synthetic_mimic_cxr_report": (1, "MIMIC-CXR report"),
      "synthetic_mimic_cxr_classification": (1, "MIMIC-CXR classification"),
      "synthetic_pad_ufes_20": (1, "PAD-UFES-20"),
      "synthetic_vindr_mammo": (1, "VinDr-Mammo"),
      "synthetic_cbis_ddsm_mass": (0, "CBIS-DDSM mass"),
      "synthetic_cbis_ddsm_calc": (0, "CBIS-DDSM calcification"),
      "synthetic_precision_fda": (0, "PrecisionFDA"),
  }
  assert (task.num_exemplars, task.paper_task) == expected[task.name]
  if task is CXR_REPORT:
    assert task.options is None and "chexbert_micro_f1_5" in task.metrics and "cider_d" in task.metrics
  elif task is genomics.TASK:
    assert task.options == ("0", "1", "2")
    assert task.metrics == ("snp_f1", "indel_f1", "truth_snp_f1", "truth_indel_f1")
  elif task.name == "synthetic_mimic_cxr_classification":  # the paper's macro-F1 is the "Yes" F1
    assert task.metrics == ("macro_auc", "positive_f1")
  else:
    assert task.metrics == ("macro_auc", "macro_f1")
  if task is dermatology.TASK:  # the paper's option order
    assert task.options == ("Nevus", "Basal Cell Carcinoma", "Squamous Cell Carcinoma",
                            "Actinic Keratosis", "Seborrheic Keratosis", "Melanoma")


@ids
def test_split_sizes_and_images(task: tasks.Task, built):
  data = built(task)
  channels, low, high = IMAGE_SPECS[task.builder.name]
  for split, size in task.builder.SPLIT_SIZES.items():
    records = data.records[split]
    assert len(records) == size
    for record in records:
      image = record["image"]
      assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == channels
      assert low <= min(image.shape[:2]) and max(image.shape[:2]) <= high, image.shape
  shapes = {r["image"].shape for r in data.records["train"]}
  if task.builder is not genomics.SyntheticPrecisionFda:
    assert len(shapes) > 20  # sizes and aspect ratios vary
  example = data.examples(task, "test")[0]
  assert len(example["images"]) == 1 and example["images"][0].dtype == np.uint8


@ids
def test_prompt_format(task: tasks.Task, built):
  data = built(task)
  examples = data.examples(task, "test")[:60]
  for example in examples:
    assert set(example) >= {"id", "task", "images", "prompt", "target"} and example["task"] == task.name
    prompt = example["prompt"]
    assert count_image_markers(prompt) == len(example["images"]) == 1
    assert prompt.count(ESCAPED_IMAGE_MARKER) == task.num_exemplars  # the exemplar's image is text
    assert prompt.endswith("A:") and prompt.startswith("Instructions: ")
    query = split_on_image_markers(prompt)[-1]  # the text after the real image
    if task.options is not None:
      assert prompts.option_list(task.options) in query
      # The option's text in the paper's answer format ("Yes."), the text option scoring scores.
      assert example["target"] == task.options[example["label"]] + "."
      assert example["target"] == task.option_targets()[example["label"]]
    # Short enough for the tiny default model.
    assert _words(prompt) <= 85, (_words(prompt), prompt)
    assert len(example["target"].split()) <= 25, example["target"]
    if task.num_exemplars:
      # The exemplar's answer follows its question, before the real query.
      assert re.search(r"A: \S", prompt[:prompt.rindex("Given")])


def test_cxr_prompts_follow_the_paper(built):
  data = built(CXR_REPORT)
  record = data.records["test"][0]
  report = CXR_REPORT.formatter(record, data.records["train"][:1])
  view, indication = tasks.text(record["view"]), tasks.text(record["indication"])
  assert report["prompt"].startswith("Instructions: You are a helpful radiology assistant.")
  assert report["prompt"].endswith(
      f"Given the {view} view X-ray image <img>. Reason for the study: {indication}. "
      "Q: Describe the findings in the image following the instructions. A:")
  assert tasks.text(data.records["train"][0]["findings"]) in report["prompt"]
  question = CXR_CLASSIFICATION.formatter(record, data.records["train"][:1])
  assert question["prompt"].endswith(
      f"Given the {view} view X-ray image <img>. Q: Is {question['condition']} indicated by the image? "
      "(A) No (B) Yes A:")


def test_cbis_and_genomics_prompts_are_the_papers():
  record = {"id": "x", "image": np.zeros((96, 96, 1), np.uint8), "label": 2, "view": b"MLO"}
  example = mammography.CBIS_CALC_TASK.formatter(record, [])
  assert example["prompt"] == (
      "Instructions: You are a helpful medical assistant. The following are questions about mammography "
      "reading. Given mammogram image <img>. Image view: MLO Q: Which of the following is the most likely "
      "type of the patient's breast calcification? (A) BENIGN (B) BENIGN_WITHOUT_CALLBACK (C) MALIGNANT A:")
  assert example["target"] == "MALIGNANT."
  record = {"id": "x", "image": np.zeros((224, 224, 3), np.uint8), "label": 1, "variant_type": b"snp",
            "locus": b"chr1:5 A>G"}
  example = genomics.TASK.formatter(record, [])
  assert example["prompt"] == (
      "Instructions: You are a helpful genetic assistant. The following are questions about variant "
      "calling. Identify the number of copies of the putative variant in pileup images. Given <img>. "
      "Q: How many copies of this putative variant are shown in the middle of the image? "
      "(A) 0 (B) 1 (C) 2 A:")
  assert (example["target"], example["variant_type"], example["locus"]) == ("1.", "snp", "chr1:5 A>G")


def test_cxr_report_says_what_the_labels_say(built):
  """The findings text is written from the drawn conditions, sentence by sentence."""
  mentions = {
      "atelectasis": r"atelectasis",
      "cardiomegaly": r"The heart is enlarged",
      "consolidation": r"Patchy consolidation",
      "edema": r"pulmonary edema",
      "pleural effusion": r"(Small|Moderate|Large) [^.]*pleural effusion",
  }
  for record in built(CXR_REPORT).records["test"]:
    findings = tasks.text(record["findings"])
    for condition, present in zip(chest_xray.CONDITIONS, record["labels"]):
      assert bool(re.search(mentions[condition], findings)) == bool(present), (condition, findings)
    assert findings.endswith("pneumothorax.")


def test_cxr_classification_asks_about_each_condition(built):
  examples = built(CXR_CLASSIFICATION).examples(CXR_CLASSIFICATION, "test")
  counts = {c: sum(e["condition"] == c for e in examples) for c in chest_xray.CONDITIONS}
  assert min(counts.values()) == max(counts.values()) == len(examples) // 5
  for condition in chest_xray.CONDITIONS:
    labels = [e["label"] for e in examples if e["condition"] == condition]
    assert 0.15 < np.mean(labels) < 0.7  # both answers occur for every condition


def test_genomics_examples_carry_variant_type(built):
  examples = built(genomics.TASK).examples(genomics.TASK, "test")
  types = [e["variant_type"] for e in examples]
  assert set(types) == {"snp", "indel"} and types.count("indel") > 20
  for record in built(genomics.TASK).records["test"][:5]:
    assert re.fullmatch(r"chr1:\d+ [ACGT]+>[ACGT]+", tasks.text(record["locus"]))


@classification_ids
def test_classes_roughly_balanced(task: tasks.Task, built):
  for split in ("train", "test"):
    labels = [e["label"] for e in built(task).examples(task, split)]
    fractions = np.bincount(labels, minlength=len(task.options)) / len(labels)
    assert fractions.min() > 0.1 and fractions.max() < 0.7, (split, fractions)


def _image_digest(record: dict[str, Any]) -> str:
  return hashlib.sha1(np.ascontiguousarray(record["image"]).tobytes()).hexdigest()


@ids
def test_splits_are_disjoint(task: tasks.Task, built):
  data = built(task)
  train = {_image_digest(r) for r in data.records["train"]}
  test = {_image_digest(r) for r in data.records["test"]}
  assert len(train) == len(data.records["train"]) and len(test) == len(data.records["test"])
  assert not train & test
  assert not {tasks.text(r["id"]) for r in data.records["train"]} & {
      tasks.text(r["id"]) for r in data.records["test"]}


def _same_record(stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
  """A record read back from TFDS equals one generated afresh (TFDS returns text as bytes)."""
  fresh = {k: v.encode() if isinstance(v, str) else v for k, v in fresh.items()}
  return stored.keys() == fresh.keys() and all(
      np.array_equal(np.asarray(stored[k]), np.asarray(fresh[k])) for k in stored)


@pytest.mark.parametrize("builder_cls", sorted({t.builder for t in ALL_TASKS}, key=lambda b: b.name),
                         ids=lambda b: b.name)
def test_deterministic_for_a_seed(builder_cls: type, built, tmp_path):
  task = next(t for t in ALL_TASKS if t.builder is builder_cls)
  # Image builders stream train records one by one (their test split first regenerates all of
  # train); genomics simulates a whole split's genome up front, and its test genome is smaller.
  split = "test" if builder_cls is genomics.SyntheticPrecisionFda else "train"
  stored = built(task).records[split][:4]

  def first(seed: int) -> list[dict[str, Any]]:
    return list(itertools.islice(builder_cls(data_dir=str(tmp_path), seed=seed).records(split), 4))

  assert all(_same_record(a, b) for a, b in zip(stored, first(seed=0), strict=True))
  other = first(seed=1)
  assert not any(np.array_equal(a["image"], b["image"]) for a, b in zip(stored, other, strict=True))


# The label depends on the image -----------------------------------------------------------------

def _thumbnail(image: np.ndarray) -> np.ndarray:
  """16x16 aspect-preserving thumbnail, flattened and scaled to [0, 1]."""
  small = preprocess.resize_with_pad(preprocess.to_rgb(image), 16)
  return (small[..., :1] if image.shape[-1] == 1 else small).reshape(-1) / 255.0


def _pileup_centre(image: np.ndarray) -> np.ndarray:
  """The candidate's column and its neighbours, over all six channels (both stacked halves)."""
  centre = genomics_lib.DEFAULT_OPTIONS.half_width
  return image[:2 * genomics_lib.PILEUP_HEIGHT, centre - 1:centre + 2].reshape(-1) / 255.0


def _accuracies(x_train, y_train, x_test, y_test) -> tuple[float, float, float]:
  """(accuracy, accuracy with test images shuffled across examples, majority-class accuracy)."""
  # One BLAS thread: on a 2-core machine the default threading makes these fits 20x slower.
  with threadpool_limits(1):
    model = LogisticRegression(C=0.1, max_iter=3000).fit(x_train, y_train)
  shuffled = np.random.default_rng(0).permutation(len(x_test))
  majority = np.bincount(y_train).argmax()
  return (model.score(x_test, y_test), model.score(x_test[shuffled], y_test),
          float(np.mean(y_test == majority)))


def _groups(task: tasks.Task, examples: list[tasks.Example]) -> dict[str, list[tasks.Example]]:
  # MIMIC-CXR classification is five binary problems, one per condition asked about.
  if task is CXR_CLASSIFICATION:
    return {c: [e for e in examples if e["condition"] == c] for c in chest_xray.CONDITIONS}
  return {"all": examples}


@classification_ids
def test_label_is_learnable_from_the_image_only(task: tasks.Task, built):
  data = built(task)
  featurize = _pileup_centre if task is genomics.TASK else _thumbnail
  train, test = _groups(task, data.examples(task, "train")), _groups(task, data.examples(task, "test"))
  hits = shuffled_hits = majority_hits = 0
  for group in train:
    x_train = np.stack([featurize(e["images"][0]) for e in train[group]])
    x_test = np.stack([featurize(e["images"][0]) for e in test[group]])
    y_train = np.array([e["label"] for e in train[group]])
    y_test = np.array([e["label"] for e in test[group]])
    accuracy, shuffled, majority = _accuracies(x_train, y_train, x_test, y_test)
    hits, shuffled_hits, majority_hits = (hits + accuracy * len(y_test), shuffled_hits + shuffled * len(y_test),
                                          majority_hits + majority * len(y_test))
  n = sum(len(g) for g in test.values())
  accuracy, shuffled, majority = hits / n, shuffled_hits / n, majority_hits / n
  assert accuracy > majority + 0.12, (accuracy, majority)
  assert shuffled < majority + 0.06, (shuffled, majority)


def test_report_content_is_learnable_from_the_image_only(built):
  """A report sentence (heart size) is predicted from the image, and not from a shuffled one."""
  data = built(CXR_REPORT)
  split = {s: data.examples(CXR_REPORT, s) for s in ("train", "test")}
  x = {s: np.stack([_thumbnail(e["images"][0]) for e in split[s]]) for s in split}
  y = {s: np.array([e["target"].startswith("The heart is enlarged.") for e in split[s]], int) for s in split}
  accuracy, shuffled, majority = _accuracies(x["train"], y["train"], x["test"], y["test"])
  assert accuracy > majority + 0.12, (accuracy, majority)
  assert shuffled < majority + 0.06, (shuffled, majority)
