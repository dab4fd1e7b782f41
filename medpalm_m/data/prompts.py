"""The paper's prompts in one place: instructions, option lists and the answer format.

The paper's format on every task (Tu et al. 2023, Tables A.9-A.13): the prompt begins with
"Instructions:" (`instructions`), and every answer, the target and each exemplar's, ends with "."
("Yes.", "Nevus.", "1."; `answer`). Option lists and option scoring use the option texts in that
format too (`answer`), so the likelihood scored is that of the text the model is trained to
produce. The metrics read answers back without it: choice parsing and the text metrics' tokenizers
drop trailing punctuation (metrics/choice.py, metrics/text.py).

Real builders (`data/builders/`) and their synthetic analogs (`data/synthetic/`) take their
instructions and option sets from here, and a prompt form that a real task and its analog share
(VinDr-Mammo, CBIS-DDSM, PrecisionFDA) has its one formatter here. The synthetic instructions are
shortened versions of the paper's, because the tiny default model reads every token. Every string
here is part of the data: changing one changes what the model is trained and scored on.
"""

from __future__ import annotations

import re
import string
from typing import Sequence

import numpy as np

from medpalm_m.data import tasks
from medpalm_m.data import tokenizer

# Option i is shown as "(A)", "(B)", ...; answers are parsed back with the same letters.
OPTION_LETTERS = string.ascii_uppercase


def instructions(text: str) -> str:
  """The paper's instruction block: "Instructions: You are a helpful ..."."""
  return f"Instructions: {text}"


def answer(text: str) -> str:
  """The paper's answer format: the answer ending with "." ("Yes" -> "Yes."); an answer that
  already ends with one (a report's findings) is kept as it is."""
  text = text.strip()
  return text if text.endswith(".") else f"{text}."


def option_letter(index: int) -> str:
  return OPTION_LETTERS[index]


def option_list(options: Sequence[str]) -> str:
  """The paper's option list: "(A) No (B) Yes"."""
  return " ".join(f"({option_letter(i)}) {o}" for i, o in enumerate(options))


# Option sets, in label order ------------------------------------------------------------------

CHEST_XRAY_ANSWERS = ("No", "Yes")
# The paper's option order (Med-PaLM M Fig. 2), which is also the label index.
SKIN_LESION_CLASSES = ("Nevus", "Basal Cell Carcinoma", "Squamous Cell Carcinoma",
                       "Actinic Keratosis", "Seborrheic Keratosis", "Melanoma")
BIRADS_OPTIONS = ("1", "2", "3", "4", "5")
PATHOLOGIES = ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")  # CBIS-DDSM
GENOTYPES = ("0", "1", "2")  # copies of the alternate allele
PUBMEDQA_OPTIONS = ("yes", "no", "maybe")

# A mammogram's laterality and view as the prompt spells them.
MAMMOGRAM_SIDES = {"L": "left", "R": "right"}
MAMMOGRAM_VIEWS = {"CC": "craniocaudal", "MLO": "mediolateral oblique"}


# The paper's instructions, verbatim [Med-PaLM M Fig. 2 and Table A.9] --------------------------

MEDQA_INSTRUCTION = instructions(
    "The following are multiple choice questions about medical knowledge. Solve them in a "
    "step-by-step fashion, starting by summarizing the available information. Output a single "
    "option from the four options as the final answer.")
MIMIC_III_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. The following are questions about radiology "
    "reports. Summarize the findings in the report into diagnostic statements.")
VQA_INSTRUCTION = instructions(
    "You are a helpful medical assistant. The following are questions about medical knowledge. "
    "Solve them in a step-by-step fashion, referring to authoritative sources as needed.")
MIMIC_CXR_REPORT_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. Describe what lines, tubes, and devices "
    "are present and each of their locations. Describe if pneumothorax is present; if present, "
    "describe size on each side. Describe if pleural effusion is present; if present, describe "
    "amount on each side. Describe if lung opacity (atelectasis, fibrosis, consolidation, "
    "infiltrate, lung mass, pneumonia, pulmonary edema) is present; if present, describe kinds and "
    "locations. Describe the cardiac silhouette size. Describe the width and contours of the "
    "mediastinum. Describe if hilar enlargement is present; if enlarged, describe side. Describe "
    "what fractures or other skeletal abnormalities are present.")
MIMIC_CXR_CLASSIFICATION_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. The following are questions about "
    "findings in chest X-ray in different views. Identify if a specific type of abnormality is "
    "shown in the X-ray.")
PAD_UFES_20_INSTRUCTION = instructions(
    "You are a helpful dermatology assistant. The following are questions about "
    "skin lesions. Categorize the skin lesions into the most likely class given the patient "
    "history.")
VINDR_MAMMO_INSTRUCTION = instructions(
    "You are a helpful medical assistant. The following are questions about "
    "mammography reading. Provide a breast-level assessment based on the BI-RADS categories.")
# Real and synthetic PrecisionFDA share the paper's 0-shot prompt.
PRECISION_FDA_INSTRUCTION = instructions(
    "You are a helpful genetic assistant. The following are questions about "
    "variant calling. Identify the number of copies of the putative variant in pileup images.")
# Not the paper's: real PubMedQA uses its synthetic analog's instruction (the task's form is the
# same).
PUBMEDQA_INSTRUCTION = instructions(
    "The following are questions about medical research. Answer yes, no or maybe given the context.")
# Not the paper's: it shows CBIS-DDSM's 0-shot prompt without an instruction, but begins every
# task's prompt with "Instructions:"; these are the first two sentences of its VinDr-Mammo one.
CBIS_DDSM_INSTRUCTION = instructions(
    "You are a helpful medical assistant. The following are questions about mammography reading.")


# The synthetic analogs' shortened instructions -------------------------------------------------

# The paper's instruction goes on ("Solve them in a step-by-step fashion, ... Output a single option
# from the four options as the final answer."); two exemplars and the question already fill the
# tiny config's 176 prompt tokens, so only its first sentence is kept.
SYNTHETIC_MEDQA_INSTRUCTION = instructions("The following are multiple choice questions about medical knowledge.")
SYNTHETIC_MIMIC_III_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. Summarize the findings in the report into "
    "diagnostic statements.")
SYNTHETIC_VQA_INSTRUCTION = instructions(
    "You are a helpful medical assistant. The following are questions about medical images.")
# The paper's instruction lists what to describe (devices, pneumothorax, effusion, lungs, heart,
# bones) in a paragraph; shortened to what these radiographs show.
SYNTHETIC_MIMIC_CXR_REPORT_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. Describe pneumothorax, effusions, "
    "lungs and heart.")
SYNTHETIC_MIMIC_CXR_CLASSIFICATION_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. Identify if a specific type of abnormality is "
    "shown in the X-ray.")
# The zero-shot TB analog asks as the chest X-ray classification analog does.
SYNTHETIC_TUBERCULOSIS_INSTRUCTION = instructions(
    "You are a helpful radiology assistant. Identify if tuberculosis is shown in the X-ray.")
SYNTHETIC_PAD_UFES_20_INSTRUCTION = instructions(
    "You are a helpful dermatology assistant. Classify the skin lesion.")
SYNTHETIC_VINDR_MAMMO_INSTRUCTION = instructions(
    "You are a helpful medical assistant. Provide a breast-level assessment based on the "
    "BI-RADS categories.")


# Formatters shared by a real task and its synthetic analog -------------------------------------

def _vindr_query(record: tasks.Record) -> str:
  side = MAMMOGRAM_SIDES[tasks.text(record["laterality"])]
  view = f"{side} {MAMMOGRAM_VIEWS[tasks.text(record['view'])]}"
  return (f"Given mammogram image {tokenizer.IMAGE_MARKER}. Image view: {view} "
          f"Q: What is the most likely breast BI-RADS score? {option_list(BIRADS_OPTIONS)} A:")


def vindr_formatter(task_name: str, instruction: str):
  """The VinDr-Mammo prompt (view, BI-RADS question, text-only 1-shot exemplar) under an
  instruction: the paper's for the real task, a shorter one for the synthetic analog."""

  def format_vindr(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    parts = [instruction]
    for exemplar in exemplars:
      parts.append(tokenizer.escape_image_markers(_vindr_query(exemplar)) + " "
                   + answer(BIRADS_OPTIONS[int(exemplar["label"])]))
    parts.append(_vindr_query(record))
    label = int(record["label"])
    return {
        "id": tasks.text(record["id"]),
        "task": task_name,
        "images": [np.asarray(record["image"])],
        "prompt": " ".join(parts),
        "target": answer(BIRADS_OPTIONS[label]),
        "label": label,
    }

  return format_vindr


def _zero_shot_choice(record: tasks.Record, task_name: str, prompt: str,
                      options: Sequence[str]) -> tasks.Example:
  """A question about the record's one image, answered by one of `options`."""
  label = int(record["label"])
  return {
      "id": tasks.text(record["id"]),
      "task": task_name,
      "images": [np.asarray(record["image"])],
      "prompt": prompt,
      "target": answer(options[label]),
      "label": label,
  }


def format_cbis(record: tasks.Record, exemplars: Sequence[tasks.Record], *, task_name: str,
                abnormality: str) -> tasks.Example:
  del exemplars  # 0-shot, as in the paper
  prompt = (f"{CBIS_DDSM_INSTRUCTION} Given mammogram image {tokenizer.IMAGE_MARKER}. "
            f"Image view: {tasks.text(record['view'])} "
            f"Q: Which of the following is the most likely type of the patient's breast "
            f"{abnormality}? {option_list(PATHOLOGIES)} A:")
  return _zero_shot_choice(record, task_name, prompt, PATHOLOGIES)


def format_genotype(record: tasks.Record, exemplars: Sequence[tasks.Record], *,
                    task_name: str) -> tasks.Example:
  del exemplars  # 0-shot, as in the paper
  prompt = (f"{PRECISION_FDA_INSTRUCTION} Given {tokenizer.IMAGE_MARKER}. "
            "Q: How many copies of this putative variant are shown in the middle of the image? "
            f"{option_list(GENOTYPES)} A:")
  # SNP-F1 and indel-F1 are computed separately; the locus places the call in the truth set.
  return {**_zero_shot_choice(record, task_name, prompt, GENOTYPES),
          "variant_type": tasks.text(record["variant_type"]), "locus": tasks.text(record["locus"])}


# Zero-shot tuberculosis detection [Med-PaLM M §6.2.1, Fig. 3] ---------------------------------
# The paper asks a yes/no multiple-choice question with one text-only exemplar, on a concept no
# training task names; it gives the form, not every word. Ours: the MIMIC-CXR classification
# instruction and question with tuberculosis as the abnormality, answers ending with ".".
TUBERCULOSIS_INSTRUCTION = (
    "Instructions: You are a helpful radiology assistant. The following are questions about "
    "tuberculosis vs normal chest X-rays. Identify if tuberculosis is shown in the X-ray.")
# Figure 3's chain-of-thought request.
CHAIN_OF_THOUGHT_REQUEST = (
    "Solve it step by step, output a single option from the following options as the final answer.")
# The one exemplar, text only (its image is the literal "<img>"); the chain-of-thought variant's
# exemplar reasons first and ends with the marker `final_answer` reads back.
TUBERCULOSIS_EXEMPLAR_VIEW = "PA"
TUBERCULOSIS_EXEMPLAR_REASONING = (
    "There is a cavity with a thick wall in the right upper lobe and patchy opacity around it. "
    "An upper-lobe cavity is typical of tuberculosis.")
FINAL_ANSWER_MARKER = "The final answer is"


def _tuberculosis_query(view: str) -> str:
  return (f"Given the {view} view X-ray image {tokenizer.IMAGE_MARKER}. "
          f"Q: Is tuberculosis indicated by the image? {option_list(CHEST_XRAY_ANSWERS)} A:")


def tuberculosis_prompt(view: str, *, chain_of_thought: bool, instruction: str) -> str:
  """Instruction, the text-only exemplar (a "Yes" case) and the question about `view`'s image."""
  exemplar = tokenizer.escape_image_markers(_tuberculosis_query(TUBERCULOSIS_EXEMPLAR_VIEW))
  if chain_of_thought:
    instruction = f"{instruction} {CHAIN_OF_THOUGHT_REQUEST}"
    answer = f"{TUBERCULOSIS_EXEMPLAR_REASONING} {FINAL_ANSWER_MARKER} (B) Yes."
  else:
    answer = "Yes."
  return f"{instruction} {exemplar} {answer} {_tuberculosis_query(view)}"


def tuberculosis_tasks(name: str, builder: type, *, instruction: str,
                       paper_task: str | None) -> tuple[tasks.Task, tasks.Task]:
  """The direct task (accuracy, and macro-AUC from option scoring: the normalised probability of
  each class that the paper lacked) and its chain-of-thought variant `<name>_cot` (accuracy on
  the answer parsed from the reasoning's end). Evaluation only: no train split."""

  def formatter(chain_of_thought: bool, task_name: str):
    def format_tuberculosis(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
      del exemplars  # the exemplar is fixed text, as in the paper
      prompt = tuberculosis_prompt(tasks.text(record["view"]), chain_of_thought=chain_of_thought,
                                   instruction=instruction)
      return {**_zero_shot_choice(record, task_name, prompt, CHEST_XRAY_ANSWERS),
              "target": answer(CHEST_XRAY_ANSWERS[int(record['label'])])}
    return format_tuberculosis

  common = dict(builder=builder, options=CHEST_XRAY_ANSWERS, paper_task=paper_task,
                splits={"test": "test"})
  direct = tasks.Task(name=name, formatter=formatter(False, name), metrics=("accuracy", "macro_auc"),
                      **common)
  cot_name = f"{name}_cot"
  cot = tasks.Task(name=cot_name, formatter=formatter(True, cot_name), metrics=("accuracy",),
                   postprocess=final_answer, chain_of_thought=True, **common)
  return tasks.register(direct), tasks.register(cot)


_ANSWER_MARKER = re.compile(r"\banswer\s*(?:is\s*:?|:)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def final_answer(reasoning: str) -> str:
  """The answer at the end of a chain of thought: what follows its last "answer is" / "answer:",
  else its last sentence. Whether that names an option is the scorer's call (an answer that
  names none is counted as unparseable and scored wrong)."""
  reasoning = reasoning.strip()
  markers = list(_ANSWER_MARKER.finditer(reasoning))
  if markers:
    return reasoning[markers[-1].end():].strip()
  sentences = _SENTENCE_END.split(reasoning)
  return sentences[-1].strip() if sentences else ""


# Zero-shot two-view report generation [Med-PaLM M §6.2.3, Table 5] -----------------------------
# Training shows one image per report; the two-view prompt gives the frontal view, then the
# lateral one, each as the single-view prompt names it, and asks the single-view question.

def _two_view_query(record: tasks.Record) -> str:
  indication = tasks.text(record["indication"]).rstrip(". ")
  reason = f" Reason for the study: {indication}." if indication else ""
  return (f"Given the {tasks.text(record['frontal_view'])} view X-ray image {tokenizer.IMAGE_MARKER}. "
          f"Given the LATERAL view X-ray image {tokenizer.IMAGE_MARKER}.{reason} "
          "Q: Describe the findings in the image following the instructions. A:")


def two_view_report_formatter(task_name: str, instruction: str):
  """Frontal and lateral image of one study -> its findings, after text-only exemplars."""

  def format_two_view(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    parts = [instruction]
    for exemplar in exemplars:
      parts.append(tokenizer.escape_image_markers(_two_view_query(exemplar)) + " "
                   + tasks.text(exemplar["findings"]))
    parts.append(_two_view_query(record))
    return {"id": tasks.text(record["id"]), "task": task_name,
            "images": [np.asarray(record["frontal_image"]), np.asarray(record["lateral_image"])],
            "prompt": " ".join(parts), "target": tasks.text(record["findings"])}

  return format_two_view


# The report metrics of MIMIC-CXR report generation (Table 2) and of the two-view reports (Table 5).
REPORT_METRICS = ("bleu1", "bleu4", "rouge_l", "cider_d", "chexbert_micro_f1_14", "chexbert_macro_f1_14",
                  "chexbert_micro_f1_5", "chexbert_macro_f1_5", "f1_radgraph")
