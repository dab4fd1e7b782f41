"""Real text and VQA builders (MedQA, MedMCQA, PubMedQA, MIMIC-III, VQA-RAD, Slake, Path-VQA).

Each test writes a tiny copy of the dataset in its release's exact on-disk form (file names,
folder layout, JSON fields, pickles, parquet), builds it with TFDS, reads it back through the
task pipeline and checks counts, fields, labels, splits and the formatted prompt and target.
"""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
from PIL import Image

from medpalm_m.data import pipeline, tasks
from medpalm_m.data.builders import (
  base,
  medmcqa,
  medqa,
  mimic_iii,
  path_vqa,
  pubmedqa,
  safe_pickle,
  slake,
  vqa_rad,
)
from medpalm_m.data.tokenizer import count_image_markers

# The paper's format: prompts begin with "Instructions:", answers end with ".".
MC_INSTRUCTION = ("Instructions: The following are multiple choice questions about medical knowledge. Solve them in a "
                  "step-by-step fashion, starting by summarizing the available information. Output a "
                  "single option from the four options as the final answer.")
VQA_INSTRUCTION = ("Instructions: You are a helpful medical assistant. The following are questions about medical "
                   "knowledge. Solve them in a step-by-step fashion, referring to authoritative sources "
                   "as needed.")
SUMMARY_INSTRUCTION = ("Instructions: You are a helpful radiology assistant. The following are questions about radiology "
                       "reports. Summarize the findings in the report into diagnostic statements.")


def build(builder_cls, manual_dir, data_dir, **kwargs):
  builder = builder_cls(data_dir=str(data_dir), manual_dir=str(manual_dir), **kwargs)
  builder.download_and_prepare()
  return builder


def _decoded(value):
  if isinstance(value, bytes):
    return tasks.text(value)
  if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
    return [_decoded(v) for v in value]
  return value


def records(builder, split):
  return [{k: _decoded(v) for k, v in r.items()} for r in builder.as_data_source(split)]


def write_jsonl(path, rows, raw_lines=()):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    for line in raw_lines:
      f.write(line + "\n")


def write_jpeg(path, height, width, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.full((height, width, 3), value, np.uint8)
  pixels[: height // 2, :, 0] = 255 - value  # not uniform, so a decoding mix-up shows
  Image.fromarray(pixels).save(path, "JPEG", quality=95)


# MedQA -----------------------------------------------------------------------------------------

def medqa_row(i, answer_idx="B"):
  options = {"A": f"Drug a{i}", "B": f"Drug b{i}", "C": f"Drug c{i}", "D": f"Drug d{i}"}
  return {"question": f"A {20 + i}-year-old man has symptom {i}. Which drug?", "answer": options[answer_idx],
          "options": options, "meta_info": "step1", "answer_idx": answer_idx,
          "metamap_phrases": ["man", f"symptom {i}"]}


def write_medqa(root, bad_test_line=None):
  folder = os.path.join(root, "data_clean", "questions", "US", "4_options")
  write_jsonl(os.path.join(folder, "phrases_no_exclude_train.jsonl"),
              [medqa_row(i, "ABCD"[i % 4]) for i in range(4)])
  write_jsonl(os.path.join(folder, "phrases_no_exclude_dev.jsonl"), [medqa_row(10, "D")])
  test_rows = [medqa_row(20, "C"), medqa_row(21, "A")]
  write_jsonl(os.path.join(folder, "phrases_no_exclude_test.jsonl"), test_rows,
              raw_lines=[bad_test_line] if bad_test_line else ())
  return os.path.join(root, "data_clean")


def test_medqa_builds_the_paper_splits_and_two_shot_prompt(tmp_path):
  builder = build(medqa.Medqa, write_medqa(tmp_path / "dl"), tmp_path / "tfds")
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
      {"train": 4, "validation": 1, "test": 2}
  test = sorted(records(builder, "test"), key=lambda r: r["id"])
  assert test[0]["options"] == ["Drug a20", "Drug b20", "Drug c20", "Drug d20"]
  assert [r["label"] for r in test] == [2, 0]  # answer_idx C, A
  assert test[0]["meta_info"] == "step1"

  source = pipeline.TaskSource(tasks.get("medqa"), "test", str(tmp_path / "tfds"))
  assert len(source) == 2
  index = next(i for i in range(2) if tasks.text(source.records[i]["id"]) == test[0]["id"])
  example = source[index]
  train = records(builder, "train")
  shots = [train[j] for j in source.exemplar_indices(index)]
  assert len(shots) == 2

  def block(r):
    options = [tasks.text(o) for o in r["options"]]
    return (f"Question: {r['question']} (A) {options[0]} (B) {options[1]} (C) {options[2]} "
            f"(D) {options[3]} Answer:")

  expected = " ".join([MC_INSTRUCTION] + [f"{block(s)} {tasks.text(s['options'][s['label']])}."
                                          for s in shots] + [block(test[0])])
  assert example["prompt"] == expected
  assert example["target"] == "Drug c20."
  assert example["label"] == 2 and example["options"][2] == "Drug c20"
  assert example["images"] == []


def test_medqa_malformed_line_stops_or_is_skipped_and_counted(tmp_path, capsys):
  bad = json.dumps({**medqa_row(22), "answer_idx": "E"})
  manual = write_medqa(tmp_path / "dl", bad_test_line=bad)
  test_file = os.path.join(manual, "questions", "US", "4_options", "phrases_no_exclude_test.jsonl")
  with pytest.raises(base.MalformedRecordError) as error:
    build(medqa.Medqa, manual, tmp_path / "stop")
  assert error.value.path == test_file and error.value.line == 3
  assert f"{test_file}:3" in str(error.value) and "answer_idx 'E'" in str(error.value)

  builder = build(medqa.Medqa, manual, tmp_path / "skip", skip_malformed=True)
  assert builder.info.splits["test"].num_examples == 2
  assert [(e.path, e.line) for e in builder.malformed_records] == [(test_file, 3)]
  assert "skipped 1 malformed records" in capsys.readouterr().err
  with open(os.path.join(builder.data_dir, "metadata.json")) as f:
    assert json.load(f)["malformed_skipped"] == 1


# MedMCQA ---------------------------------------------------------------------------------------

def medmcqa_row(qid, cop):
  return {"question": f"Drug of choice for disease {qid} is:", "exp": f"Because {qid}.", "cop": cop,
          "opa": f"alpha{qid}", "opb": f"beta{qid}", "opc": f"gamma{qid}", "opd": f"delta{qid}",
          "subject_name": "Pharmacology", "topic_name": None, "id": f"id-{qid}", "choice_type": "single"}


def test_medmcqa_uses_dev_as_test_and_counts_cop_from_one(tmp_path):
  manual = tmp_path / "medmcqa"
  write_jsonl(str(manual / "train.json"), [medmcqa_row(f"t{i}", 1 + i % 4) for i in range(4)])
  write_jsonl(str(manual / "dev.json"), [medmcqa_row("d1", 1), medmcqa_row("d2", 4)])
  builder = build(medmcqa.Medmcqa, manual, tmp_path / "tfds")
  assert sorted(builder.info.splits) == ["train", "validation"]
  dev = {r["id"]: r for r in records(builder, "validation")}
  assert dev["medmcqa-id-d1"]["label"] == 0 and dev["medmcqa-id-d2"]["label"] == 3  # cop 1 -> A, 4 -> D
  assert dev["medmcqa-id-d2"]["subject_name"] == "Pharmacology" and dev["medmcqa-id-d2"]["topic_name"] == ""

  task = tasks.get("medmcqa")
  assert task.split_name("test") == "validation" and task.num_exemplars == 2
  source = pipeline.TaskSource(task, "test", str(tmp_path / "tfds"))
  examples = {source[i]["id"]: source[i] for i in range(len(source))}
  assert examples["medmcqa-id-d2"]["target"] == "deltad2."
  assert examples["medmcqa-id-d1"]["target"] == "alphad1."
  prompt = examples["medmcqa-id-d2"]["prompt"]
  assert prompt.startswith(MC_INSTRUCTION + " Question: ")
  assert prompt.endswith("Question: Drug of choice for disease d2 is: (A) alphad2 (B) betad2 (C) gammad2 "
                         "(D) deltad2 Answer:")
  assert prompt.count("Answer:") == 3  # two answered exemplars and the question


def test_medmcqa_zero_based_cop_is_malformed(tmp_path):
  manual = tmp_path / "medmcqa"
  write_jsonl(str(manual / "train.json"), [medmcqa_row("t1", 2), medmcqa_row("t2", 0)])
  write_jsonl(str(manual / "dev.json"), [medmcqa_row("d1", 1)])
  with pytest.raises(base.MalformedRecordError, match=r"train.json:2 \(id id-t2\): .*cop 0 is not 1-4"):
    build(medmcqa.Medmcqa, manual, tmp_path / "tfds")


# PubMedQA --------------------------------------------------------------------------------------

# PQA-L's answer counts: 552 yes, 338 no, 110 maybe.
PQAL_COUNTS = {"yes": 552, "no": 338, "maybe": 110}


def test_pubmedqa_split_has_the_papers_500_questions():
  rng = random.Random(7)
  labels = [label for label, n in PQAL_COUNTS.items() for _ in range(n)]
  rng.shuffle(labels)
  decisions = {str(10_000_000 + i): label for i, label in enumerate(labels)}
  test = pubmedqa.official_test_pmids(decisions)
  assert len(test) == len(set(test)) == 500
  counts = {label: sum(decisions[p] == label for p in test) for label in PQAL_COUNTS}
  assert counts == {"yes": 276, "no": 169, "maybe": 55}  # test_ground_truth.json's label counts


def pqal_entry(i, decision):
  return {"QUESTION": f"Does treatment {i} work?", "CONTEXTS": [f"Background {i}.", f"Results {i}."],
          "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": ["Humans"], "YEAR": "2010",
          "reasoning_required_pred": decision, "reasoning_free_pred": decision,
          "final_decision": decision, "LONG_ANSWER": f"Conclusion {i}."}


PQAL_FIXTURE = {str(100 + i): d for i, d in enumerate(
    ["yes", "no", "yes", "maybe", "yes", "no", "yes", "yes", "no", "maybe", "yes", "no"])}
# split_dataset.py pqal (random.seed(0)) applied to PQAL_FIXTURE, worked out with the script itself.
PQAL_FIXTURE_TEST = ["100", "110", "106", "105", "111", "109"]


def write_pqal(folder, decisions=PQAL_FIXTURE):
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "ori_pqal.json"), "w") as f:
    json.dump({pmid: pqal_entry(int(pmid), d) for pmid, d in decisions.items()}, f, indent=4)


def test_pubmedqa_builds_the_official_test_split_and_prompt(tmp_path):
  manual = tmp_path / "data"
  write_pqal(str(manual))
  assert pubmedqa.official_test_pmids(PQAL_FIXTURE) == PQAL_FIXTURE_TEST
  with open(manual / "test_ground_truth.json", "w") as f:  # present: checked, and it agrees
    json.dump({p: PQAL_FIXTURE[p] for p in PQAL_FIXTURE_TEST}, f)
  builder = build(pubmedqa.Pubmedqa, manual, tmp_path / "tfds")
  test = {r["id"]: r for r in records(builder, "test")}
  assert sorted(test) == sorted(PQAL_FIXTURE_TEST)
  assert len(records(builder, "train")) == 6
  assert test["105"]["label"] == 1 and test["105"]["context"] == "Background 105. Results 105."

  task = tasks.get("pubmedqa")
  assert task.options == ("yes", "no", "maybe") and "pubmedqa" not in _paper_mixture()
  source = pipeline.TaskSource(task, "test", str(tmp_path / "tfds"))
  index = next(i for i in range(len(source)) if tasks.text(source.records[i]["id"]) == "105")
  example = source[index]
  (shot,) = [records(builder, "train")[j] for j in source.exemplar_indices(index)]
  assert example["target"] == "no." and example["label"] == 1
  assert example["prompt"] == (
      "Instructions: The following are questions about medical research. Answer yes, no or maybe given the "
      f"context. Context: {shot['context']} Question: {shot['question']} (A) yes (B) no (C) maybe Answer: "
      f"{('yes', 'no', 'maybe')[shot['label']]}. "
      "Context: Background 105. Results 105. Question: Does treatment 105 work? (A) yes (B) no (C) maybe Answer:")


def test_pubmedqa_takes_the_releases_ground_truth_as_its_test_split(tmp_path):
  manual = tmp_path / "data"
  write_pqal(str(manual))
  truth = {"101": "no", "102": "maybe", "103": "maybe", "104": "yes"}  # not the recomputed split
  with open(manual / "test_ground_truth.json", "w") as f:
    json.dump(truth, f, indent=1)
  builder = build(pubmedqa.Pubmedqa, manual, tmp_path / "tfds")
  test = {r["id"]: ("yes", "no", "maybe")[r["label"]] for r in records(builder, "test")}
  assert test == truth  # its PMIDs and its answers ("102" is "no" in ori_pqal.json)
  assert sorted(r["id"] for r in records(builder, "train")) == sorted(set(PQAL_FIXTURE) - set(truth))

  truth["999"] = "yes"
  with open(manual / "test_ground_truth.json", "w") as f:
    json.dump(truth, f, indent=1)
  with pytest.raises(base.MalformedRecordError, match=r"test_ground_truth.json:6 \(PMID 999\): PMID 999 is not "
                                                      r"in ori_pqal.json"):
    build(pubmedqa.Pubmedqa, manual, tmp_path / "refused")


def _paper_mixture():
  from configs.mixtures import multimedbench
  return multimedbench.MIXTURE


# MIMIC-III -------------------------------------------------------------------------------------

def write_rrs(root, bad_impression_line=None, exams=mimic_iii.IN_DOMAIN, long_findings=False):
  for exam in exams:
    for prefix, n in (("train", 2), ("validate", 1), ("test", 1)):
      folder = os.path.join(root, exam)
      os.makedirs(folder, exist_ok=True)
      findings = [f"{exam} {prefix} finding {i} ." for i in range(n)]
      impressions = [f"{exam} {prefix} impression {i}" for i in range(n)]
      if bad_impression_line and (exam, prefix) == ("CT_chest", "test"):
        impressions[bad_impression_line - 1] = "   "
      if long_findings and prefix == "train":  # the paper drops findings over 600 tokens
        findings[0] = " ".join(["word"] * 600)
        findings[1] = " ".join(["word"] * 601)
      with open(os.path.join(folder, f"{prefix}.findings.tok"), "w") as f:
        f.write("\n".join(findings) + "\n")
      with open(os.path.join(folder, f"{prefix}.impression.tok"), "w") as f:
        f.write("\n".join(impressions) + "\n")
  os.makedirs(os.path.join(root, "MR_spine"))  # an out-of-domain folder with its test split only
  with open(os.path.join(root, "MR_spine", "test.findings.tok"), "w") as f:
    f.write("mild canal stenosis at l4-5 <img>\n")  # text that looks like an image marker stays text
  with open(os.path.join(root, "MR_spine", "test.impression.tok"), "w") as f:
    f.write("mild l4-5 stenosis .\n")


def test_mimic_iii_pairs_findings_with_impressions_and_formats_zero_shot(tmp_path):
  write_rrs(str(tmp_path / "rrs"))
  builder = build(mimic_iii.MimicIii, tmp_path / "rrs", tmp_path / "tfds")
  # In-domain pairs train and test; the rarer pairs are the evaluation-only ood_test split.
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test", "ood_test")} == \
      {"train": 12, "validation": 6, "test": 6, "ood_test": 1}
  test = {r["id"]: r for r in records(builder, "test")}
  assert test["mimic_iii-CT_head-test-1"]["findings"] == "CT_head test finding 0 ."
  assert test["mimic_iii-CT_head-test-1"]["impression"] == "CT_head test impression 0"
  assert [r["exam"] for r in records(builder, "ood_test")] == ["MR_spine"]

  source = pipeline.TaskSource(tasks.get("mimic_iii"), "test", str(tmp_path / "tfds"))
  examples = {source[i]["id"]: source[i] for i in range(len(source))}
  assert examples["mimic_iii-CT_head-test-1"]["prompt"] == (
      f"{SUMMARY_INSTRUCTION} Given the findings: CT_head test finding 0 . Q: Summarize the findings. A:")
  assert examples["mimic_iii-CT_head-test-1"]["target"] == "CT_head test impression 0."
  ood = pipeline.TaskSource(tasks.get("mimic_iii_ood"), "test", str(tmp_path / "tfds"))
  (example,) = [ood[i] for i in range(len(ood))]
  assert example["task"] == "mimic_iii_ood" and example["prompt"] == (
      f"{SUMMARY_INSTRUCTION} Given the findings: mild canal stenosis at l4-5 \\<img>. Q: Summarize the findings. A:")
  assert count_image_markers(example["prompt"]) == 0
  assert example["target"] == "mild l4-5 stenosis ."  # already ends with "."
  assert tasks.get("mimic_iii").metrics == tasks.get("mimic_iii_ood").metrics == ("rouge_l", "bleu4", "f1_radgraph")
  assert "train" not in tasks.get("mimic_iii_ood").splits  # evaluation only


def test_mimic_iii_builds_from_the_folders_present_names_those_missing_and_counts_long_findings(tmp_path, capsys):
  manual = tmp_path / "rrs"
  write_rrs(str(manual), exams=("CT_head", "CT_chest"), long_findings=True)
  os.makedirs(manual / "notes")  # not a modality_anatomy folder
  builder = build(mimic_iii.MimicIii, manual, tmp_path / "tfds")
  report = capsys.readouterr().err
  assert f"mimic_iii: building from CT_head, CT_chest, MR_spine in {manual}; missing: CT_abdomen, MR_head, " \
      "CT_spine, CT_neck, CT_sinus, MR_abdomen, MR_pelvis, MR_neck; not modality_anatomy folders of " \
      "MIMIC-RRS, not read: notes" in report
  assert "left out by the paper's data selection:\n  train: findings over 600 tokens: 2" in report
  # Each folder's 601-token findings is dropped; 600 tokens are kept.
  assert {s: builder.info.splits[s].num_examples for s in ("train", "test", "ood_test")} == \
      {"train": 2, "test": 2, "ood_test": 1}
  assert all(len(r["findings"].split()) == 600 for r in records(builder, "train"))
  metadata = mimic_iii.MimicIii(data_dir=str(tmp_path / "tfds")).info.metadata
  assert metadata["left_out"] == {"train: findings over 600 tokens": 2}
  assert metadata["missing_folders"][:4] == ["CT_abdomen", "MR_head", "CT_spine", "CT_neck"]

  with pytest.raises(base.ManualDataError, match=r"CT_head/train.findings.tok or CT_abdomen/train.findings.tok"):
    build(mimic_iii.MimicIii, tmp_path / "empty", tmp_path / "none")


def test_mimic_iii_empty_impression_is_malformed_and_unpaired_files_stop(tmp_path):
  write_rrs(str(tmp_path / "rrs"), bad_impression_line=1)
  bad_file = str(tmp_path / "rrs" / "CT_chest" / "test.impression.tok")
  with pytest.raises(base.MalformedRecordError, match=f"{bad_file}:1: empty report section"):
    build(mimic_iii.MimicIii, tmp_path / "rrs", tmp_path / "stop")
  builder = build(mimic_iii.MimicIii, tmp_path / "rrs", tmp_path / "skip", skip_malformed=True)
  assert builder.info.splits["test"].num_examples == 5 and len(builder.malformed_records) == 1

  with open(tmp_path / "rrs" / "CT_head" / "train.impression.tok", "a") as f:
    f.write("an impression without findings\n")
  with pytest.raises(base.MalformedRecordError, match="train.findings.tok:3: .*different numbers of lines"):
    build(mimic_iii.MimicIii, tmp_path / "rrs", tmp_path / "unpaired", skip_malformed=True)


# VQA -------------------------------------------------------------------------------------------

def assert_vqa_prompt(example, question, exemplar):
  assert example["prompt"] == (f"{VQA_INSTRUCTION} Given \\<img>. Q: {exemplar['question']} A: {exemplar['answer']}. "
                               f"Given <img>. Q: {question} A:")
  assert count_image_markers(example["prompt"]) == 1 == len(example["images"])


def vqa_example(task_name, data_dir, split, record_id):
  source = pipeline.TaskSource(tasks.get(task_name), split, str(data_dir))
  index = next(i for i in range(len(source)) if tasks.text(source.records[i]["id"]) == record_id)
  train = source.exemplars
  (shot,) = [{k: tasks.text(train[j][k]) for k in ("question", "answer")} for j in source.exemplar_indices(index)]
  return source[index], shot


def test_vqa_rad_splits_on_phrase_type(tmp_path):
  manual = tmp_path / "VQA_RAD"
  write_jpeg(str(manual / "VQA_RAD Image Folder" / "synpic100.jpg"), 40, 60, 30)
  write_jpeg(str(manual / "VQA_RAD Image Folder" / "synpic200.jpg"), 50, 50, 200)
  entries = []
  for qid, (phrase, image, question, answer, kind) in enumerate([
      ("freeform", "synpic100.jpg", "Is there a fracture?", "No", "CLOSED"),
      ("para", "synpic100.jpg", "Is a bone broken?", "No", "CLOSED"),
      ("freeform", "synpic200.jpg", "How many lesions are seen?", 2, "OPEN"),
      ("test_freeform", "synpic200.jpg", "What organ is this?", "Liver", "OPEN"),
      ("test_para", "synpic100.jpg", "Which organ is shown?", "Chest", "OPEN")]):
    entries.append({"qid": qid, "phrase_type": phrase, "qid_linked_id": f"0{qid}", "image_case_url": "https://x",
                    "image_name": image, "image_organ": "HEAD", "evaluation": "given", "question": question,
                    "question_rephrase": "NULL", "question_relation": "NULL", "question_frame": "NULL",
                    "question_type": "PRES", "answer": answer, "answer_type": kind})
  with open(manual / "VQA_RAD Dataset Public.json", "w") as f:
    json.dump(entries, f, indent=4)
  builder = build(vqa_rad.VqaRad, manual, tmp_path / "tfds")
  assert builder.info.splits["train"].num_examples == 3 and builder.info.splits["test"].num_examples == 2
  train = {r["id"]: r for r in records(builder, "train")}
  assert train["vqa_rad-2"]["answer"] == "2" and train["vqa_rad-2"]["answer_type"] == "OPEN"
  assert train["vqa_rad-0"]["image"].shape == (40, 60, 3) and train["vqa_rad-0"]["image_name"] == "synpic100.jpg"
  assert abs(int(train["vqa_rad-0"]["image"][30, 30, 0]) - 30) < 8  # the lower half keeps its value
  # Questions about one image share its stored pixels; another image's differ.
  assert np.array_equal(train["vqa_rad-0"]["image"], train["vqa_rad-1"]["image"])
  assert train["vqa_rad-2"]["image"].shape == (50, 50, 3) and abs(int(train["vqa_rad-2"]["image"][40, 5, 0]) - 200) < 8

  example, shot = vqa_example("vqa_rad", tmp_path / "tfds", "test", "vqa_rad-3")
  assert_vqa_prompt(example, "What organ is this?", shot)
  assert example["target"] == "Liver." and example["images"][0].shape == (50, 50, 3)
  assert tasks.get("vqa_rad").metrics == ("bleu1", "token_f1")


def test_slake_keeps_both_languages_or_english_only(tmp_path):
  manual = tmp_path / "Slake1.0"
  for n, value in ((1, 60), (2, 180)):
    write_jpeg(str(manual / "imgs" / f"xmlab{n}" / "source.jpg"), 32, 48, value)
  qid = iter(range(100))

  def entry(image, question, answer, lang):
    return {"img_id": int(image[5]), "img_name": image, "question": question, "answer": answer, "q_lang": lang,
            "location": "Lung", "modality": "CT", "answer_type": "CLOSED", "base_type": "vqa",
            "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": next(qid)}

  splits = {
      "train.json": [entry("xmlab1/source.jpg", "Is this a CT image?", "Yes", "en"),
                     entry("xmlab1/source.jpg", "这是CT图像吗?", "是", "zh"),
                     entry("xmlab2/source.jpg", "Which organ is abnormal?", "Lung", "en")],
      "validate.json": [entry("xmlab2/source.jpg", "Is the lung healthy?", "No", "en")],
      "test.json": [entry("xmlab2/source.jpg", "What modality is used?", "CT", "en"),
                    entry("xmlab2/source.jpg", "使用什么模态?", "CT", "zh")],
  }
  for name, rows in splits.items():
    with open(manual / name, "w") as f:
      json.dump(rows, f, ensure_ascii=False, indent=1)
  builder = build(slake.Slake, manual, tmp_path / "tfds")  # the paper's: both languages
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
      {"train": 3, "validation": 1, "test": 2}
  example, _ = vqa_example("slake", tmp_path / "tfds", "test", "slake-5")
  assert "Q: 使用什么模态? A:" in example["prompt"] and example["target"] == "CT."

  english = build(slake.Slake, manual, tmp_path / "english", english_only=True)
  assert {s: english.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
      {"train": 2, "validation": 1, "test": 1}
  assert all(r["question"].isascii() for r in records(english, "train"))
  example, shot = vqa_example("slake", tmp_path / "english", "test", "slake-4")
  assert_vqa_prompt(example, "What modality is used?", shot)
  assert example["target"] == "CT." and example["images"][0].shape == (32, 48, 3)
  assert slake.Slake(data_dir=str(tmp_path / "english")).info.metadata["builder_options"] == {"english_only": True}


def write_pvqa(root, big_image=False):
  for split, n in (("train", 3), ("val", 1), ("test", 2)):
    rows = []
    for i in range(n):
      image = f"{split}_{i:04d}"
      size = (600, 300) if big_image and split == "test" and i == 0 else (24, 36)
      write_jpeg(os.path.join(root, "images", split, f"{image}.jpg"), *size, 40 + 50 * i)
      rows.append({"image": image, "question": f"What is seen in {split} {i}?" if i else "Is there necrosis?",
                   "answer": f"cells {i}" if i else "yes"})
    os.makedirs(os.path.join(root, "qas", split))
    with open(os.path.join(root, "qas", split, f"{split}_qa.pkl"), "wb") as f:
      pickle.dump(rows, f)
  return rows


def test_path_vqa_reads_its_pickles_with_the_restricted_unpickler(tmp_path):
  write_pvqa(str(tmp_path / "pvqa"), big_image=True)
  builder = build(path_vqa.PathVqa, tmp_path / "pvqa", tmp_path / "tfds")
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
      {"train": 3, "validation": 1, "test": 2}
  test = {r["id"]: r for r in records(builder, "test")}
  assert test["path_vqa-test-0"]["answer"] == "yes" and test["path_vqa-test-0"]["answer_type"] == "CLOSED"
  assert test["path_vqa-test-0"]["image"].shape == (512, 256, 3)  # 600x300 capped at IMAGE_MAX_SIDE
  assert test["path_vqa-test-1"]["image_name"] == "test_0001" and test["path_vqa-test-1"]["answer_type"] == "OPEN"
  example, shot = vqa_example("path_vqa", tmp_path / "tfds", "test", "path_vqa-test-1")
  assert_vqa_prompt(example, "What is seen in test 1?", shot)
  assert example["target"] == "cells 1."


class _Payload:
  """What an attacker pickles: unpickling it would call os.system."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_malicious_path_vqa_pickle_is_refused_and_nothing_runs(tmp_path):
  write_pvqa(str(tmp_path / "pvqa"))
  marker = tmp_path / "pwned"
  evil = tmp_path / "pvqa" / "qas" / "val" / "val_qa.pkl"
  with open(evil, "wb") as f:
    pickle.dump([{"image": "val_0000", "question": "q", "answer": _Payload(marker)}], f)
  with pytest.raises(safe_pickle.UnsafePickleError, match=r"refused to load the global (posix|os)\.system"):
    build(path_vqa.PathVqa, tmp_path / "pvqa", tmp_path / "tfds", skip_malformed=True)
  assert not marker.exists()
  with open(evil, "rb") as f:  # the same bytes do run code under the ordinary unpickler
    pickle.load(f)
  assert marker.exists()

  for value in ({1, 2}, b"bytes", np.int64(3)):  # no code, but not plain data either
    with open(evil, "wb") as f:
      pickle.dump([{"image": "val_0000", "question": "q", "answer": value}], f)
    with pytest.raises(safe_pickle.UnsafePickleError):
      safe_pickle.load_plain(evil)
  rows = [{"image": "val_0000", "question": "q", "answer": "a", "n": [1, 2.5, None, True]}]
  for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
    with open(evil, "wb") as f:
      pickle.dump(rows, f, protocol=protocol)
    assert safe_pickle.load_plain(evil) == rows


def test_a_refused_download_is_one_error_line_naming_the_file(tmp_path):
  """As a user meets it: `python -m medpalm_m.data build`, in a subprocess, on a tampered pickle."""
  import subprocess
  import sys
  write_pvqa(str(tmp_path / "pvqa"))
  evil = tmp_path / "pvqa" / "qas" / "test" / "test_qa.pkl"
  with open(evil, "wb") as f:
    pickle.dump([{"image": "test_0000", "question": "q", "answer": _Payload(tmp_path / "pwned")}], f)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  done = subprocess.run([sys.executable, "-m", "medpalm_m.data", "build", "--data_dir", str(tmp_path / "tfds"),
                         f"path_vqa={tmp_path / 'pvqa'}"], capture_output=True, text=True, cwd=root,
                        env={**os.environ, "PYTHONPATH": root}, timeout=300)
  assert done.returncode == 1 and not (tmp_path / "pwned").exists()
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, done.stderr
  assert lines[0].startswith(f"error: {evil}: refused to load the global ")


def test_path_vqa_reads_the_parquet_copy(tmp_path):
  import io

  import pyarrow as pa
  import pyarrow.parquet as pq
  manual = tmp_path / "path-vqa"
  os.makedirs(manual / "data")
  for split, n in (("train", 2), ("validation", 1), ("test", 1)):
    rows = []
    for i in range(n):
      buffer = io.BytesIO()
      Image.fromarray(np.full((20, 30), 90 + i, np.uint8)).save(buffer, "PNG")
      rows.append({"image": {"bytes": buffer.getvalue(), "path": f"{split}_{i}.png"},
                   "question": f"Is this {split} {i} malignant?", "answer": "no"})
    pq.write_table(pa.Table.from_pylist(rows), manual / "data" / f"{split}-00000-of-00001.parquet")
  builder = build(path_vqa.PathVqa, manual, tmp_path / "tfds")
  (record,) = records(builder, "test")
  assert record["question"] == "Is this test 0 malignant?" and record["answer"] == "no"
  assert record["image"].shape == (20, 30, 3) and record["image"][0, 0].tolist() == [90, 90, 90]
  assert builder.info.splits["train"].num_examples == 2


# Registration ----------------------------------------------------------------------------------

def test_task_names_agree_with_the_paper_mixture():
  text_tasks = {"medqa": 2, "medmcqa": 2, "mimic_iii": 0, "vqa_rad": 1, "slake": 1, "path_vqa": 1}
  mixture = _paper_mixture()
  for name, shots in text_tasks.items():
    assert name in mixture
    assert tasks.get(name).num_exemplars == shots


# The full-run config and building from command-line paths ---------------------------------------

def test_build_command_builds_each_named_real_task_once(tmp_path, capsys):
  from medpalm_m.data import __main__ as data_cli
  manual = tmp_path / "medmcqa"
  write_jsonl(str(manual / "train.json"), [medmcqa_row(f"t{i}", 2) for i in range(3)])
  write_jsonl(str(manual / "dev.json"), [medmcqa_row("d1", 3)])
  data_cli.main(["build", "--data_dir", str(tmp_path / "tfds"), f"medqa={write_medqa(tmp_path / 'dl')}",
                 f"medmcqa={manual}"])
  out = capsys.readouterr().out
  assert "built medqa (medqa)" in out and "test 2, train 4, validation 1" in out
  assert "built medmcqa (medmcqa)" in out
  assert medqa.Medqa(data_dir=str(tmp_path / "tfds")).is_prepared()
  with pytest.raises(SystemExit) as refused:
    data_cli.main(["build", "--data_dir", str(tmp_path / "tfds"), f"slake={tmp_path / 'nowhere'}"])
  assert refused.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("error: ") == 1 and "slake: the manual directory" in err


def test_full_run_config_builds_real_data_from_command_line_paths(tmp_path):
  import importlib

  from medpalm_m import runtime
  from medpalm_m.data import tokenizer
  cfg = importlib.import_module("configs.medpalm_m_12b_multimedbench").get_config()
  assert dict(cfg.data.mixture) == _paper_mixture() and set(cfg.data.manual_dirs) >= set(_paper_mixture())
  assert (cfg.optimizer.learning_rate, cfg.train.batch_size, cfg.optimizer.schedule) == (5e-5, 128, "constant")
  assert (cfg.data.max_prompt_tokens, cfg.data.max_target_tokens, cfg.data.max_images) == (710, 256, 1)
  spm_path = tmp_path / "spm.model"
  tokenizer.train_tokenizer((f"question {i} about drug {i}" for i in range(200)), 320, spm_path)
  cfg.data.data_dir = str(tmp_path / "tfds")
  cfg.data.tokenizer = str(spm_path)
  cfg.data.manual_dirs.medqa = write_medqa(tmp_path / "dl")  # as --config.data.manual_dirs.medqa=PATH
  data_dir, _ = runtime.prepare_data(cfg)
  assert len(pipeline.TaskSource(tasks.get("medqa"), "test", data_dir)) == 2


def test_vqa_question_whose_image_is_missing_is_malformed_at_its_line(tmp_path):
  manual = tmp_path / "VQA_RAD"
  write_jpeg(str(manual / "VQA_RAD Image Folder" / "synpic1.jpg"), 20, 20, 50)
  entries = [{"qid": i, "phrase_type": phrase, "image_name": image, "question": "Is it normal?", "answer": "yes",
              "answer_type": "CLOSED"}
             for i, (phrase, image) in enumerate([("freeform", "synpic1.jpg"), ("test_para", "synpic1.jpg"),
                                                  ("freeform", "synpic9.jpg")])]
  with open(manual / "VQA_RAD Dataset Public.json", "w") as f:
    json.dump(entries, f, indent=2)  # item 2 opens on line 18
  questions = str(manual / "VQA_RAD Dataset Public.json")
  with pytest.raises(base.MalformedRecordError, match=rf"{questions}:18 \(item 2\): ImageError: .*synpic9.jpg does not exist"):
    build(vqa_rad.VqaRad, manual, tmp_path / "stop")
  builder = build(vqa_rad.VqaRad, manual, tmp_path / "skip", skip_malformed=True)
  assert builder.info.splits["train"].num_examples == 1 and len(builder.malformed_records) == 1
