"""MedQA, MedMCQA and PubMedQA analogs over a small generated medical fact base.

The fact base holds 24 facts in three relations (a disease's first-line drug, an infection's
causative organism, the condition a clinical sign suggests): 8 per relation, few enough that the
tiny default model sees each one about a hundred times in its 450 steps (60 facts were not
memorized; see the README). Every name in it is invented, so no
synthetic fact can be mistaken for medical advice. The base is fixed (independent of the build
seed) and shared by both multiple-choice tasks: a test question asks about a fact that training
questions also ask about, with another template, other distractors and another option order, so
the answer is learnable while no test prompt repeats a training prompt.

Prompts follow Med-PaLM M's wording, shortened because the tiny default model reads every token.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.synthetic import base


@dataclasses.dataclass(frozen=True)
class Relation:
  name: str
  subjects: tuple[str, ...]  # the question's key entity
  answers: tuple[str, ...]  # answers[i] is the answer for subjects[i]; the others are distractors


RELATIONS = (
    Relation("treatment",
             ("Aldren syndrome", "Belcourt disease", "Corvin palsy", "Dunmore anemia",
              "Ellery myopathy", "Farrow arthritis", "Gresham colitis", "Halvard neuropathy"),
             ("zorivax", "mepratide", "calventrol", "ostrapine", "fendazole", "luvimab",
              "tiroxacin", "bexalone")),
    Relation("cause",
             ("Ashgrove fever", "Blackmere pox", "Cinderford cough", "Dunwich plague",
              "Eastholm rash", "Fenwick flu", "Glenrock typhus", "Highmoor dysentery"),
             ("Kelbacter", "Mordavirus", "Strepholix", "Velonia", "Trepomyces", "Ardenella",
              "Borravirus", "Cryptonema")),
    Relation("sign",
             ("Abbott sign", "Brannock sign", "Castell sign", "Dempsey sign", "Eldridge sign",
              "Fairweather sign", "Gilchrist sign", "Hobart sign"),
             ("brenosis", "calderitis", "dorvaplasia", "esmeritis", "falkonosis", "gravelitis",
              "hestopathy", "ilvarosis")),
)

# subject -> (relation, answer): a question's key entity determines its answer.
FACTS: dict[str, tuple[str, str]] = {
    subject: (relation.name, answer)
    for relation in RELATIONS for subject, answer in zip(relation.subjects, relation.answers)
}


# Multiple-choice QA ----------------------------------------------------------------------------

class _MultipleChoiceBuilder(base.SyntheticBuilder, skip_registration=True):
  """A 4-option question about one fact; subclasses give the question templates per relation."""

  SPLIT_SIZES = {"train": 2000, "test": 200}
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "24 facts instead of 60; the target is the option's text"}
  TEMPLATES: dict[str, tuple[str, ...]] = {}  # relation -> templates with {subject} (and more)

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "question": tfds.features.Text(),
        "options": tfds.features.Sequence(tfds.features.Text()),
        "label": tfds.features.Scalar(np.int64),  # index of the correct option
        "subject": tfds.features.Text(),  # the fact asked about, for per-fact analysis
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    del index, split
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    fact = int(rng.integers(len(relation.subjects)))
    others = [i for i in range(len(relation.answers)) if i != fact]
    distractors = rng.choice(others, size=3, replace=False)
    options = [relation.answers[fact]] + [relation.answers[i] for i in distractors]
    order = rng.permutation(4)
    template = self.TEMPLATES[relation.name][rng.integers(len(self.TEMPLATES[relation.name]))]
    question = self.fill(template, relation.subjects[fact], rng)
    return {
        "question": question,
        "options": [options[i] for i in order],
        "label": int(np.argmax(order == 0)),
        "subject": relation.subjects[fact],
    }

  def fill(self, template: str, subject: str, rng: np.random.Generator) -> str:
    return template.format(subject=subject)

  def content_key(self, record: dict[str, Any]) -> str:
    # The prompt is what the model sees; the same prompt in train and test would be a leak.
    return record["question"] + " " + prompts.option_list(record["options"])


class SyntheticMedqa(_MultipleChoiceBuilder):
  """MedQA analog: USMLE-style vignettes (a patient's age and sex, then the question)."""

  DESCRIPTION = "Synthetic MedQA analog: 4-option vignette questions over an invented fact base."
  TEMPLATES = {
      "treatment": ("A {sex} aged {age} has {subject}. First-line drug?",
                    "A {sex} aged {age} with {subject} needs which drug?"),
      "cause": ("A {sex} aged {age} has {subject}. Causative organism?",
                "A {sex} aged {age} develops {subject}. Which organism?"),
      "sign": ("A {sex} aged {age} has a positive {subject}. Diagnosis?",
               "A {sex} aged {age} shows a positive {subject}. Which condition?"),
  }

  def fill(self, template: str, subject: str, rng: np.random.Generator) -> str:
    sex = ("man", "woman")[rng.integers(2)]
    return template.format(subject=subject, age=int(rng.integers(18, 86)), sex=sex)


class SyntheticMedmcqa(_MultipleChoiceBuilder):
  """MedMCQA analog: terse entrance-exam stems ("Drug of choice for X is:")."""

  DESCRIPTION = "Synthetic MedMCQA analog: 4-option exam-style questions over an invented fact base."
  TEMPLATES = {
      "treatment": ("Drug of choice for {subject} is:", "{subject} is treated first-line with:",
                    "First-line drug in {subject}:"),
      "cause": ("Causative agent of {subject}:", "{subject} is caused by:",
                "The organism responsible for {subject} is:"),
      "sign": ("A positive {subject} is seen in:", "{subject} suggests:",
               "A positive {subject} is characteristic of:"),
  }


def multiple_choice_formatter(task_name: str) -> Callable[[tasks.Record, Sequence[tasks.Record]], tasks.Example]:
  """Med-PaLM's MedQA/MedMCQA prompt: instruction, answered exemplars, then the question.

  The target is the correct option's text, "zorivax", as in the paper (Table A.1 and
  `reference/medpalm_m.md`); the exemplars show their answers the same way.
  """

  def block(record: tasks.Record) -> tuple[str, str, int]:
    options = [tasks.text(o) for o in record["options"]]
    label = int(record["label"])
    question = f"Question: {tasks.text(record['question'])} {prompts.option_list(options)} Answer:"
    return question, prompts.answer(options[label]), label

  def format_example(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    parts = [prompts.SYNTHETIC_MEDQA_INSTRUCTION]
    for exemplar in exemplars:
      parts.extend(block(exemplar)[:2])
    question, target, label = block(record)
    parts.append(question)
    return {"id": tasks.text(record["id"]), "task": task_name, "images": [],
            "prompt": " ".join(parts), "target": target, "label": label,
            # Options differ per question, so they travel with the example for answer parsing.
            "options": [tasks.text(o) for o in record["options"]]}

  return format_example


# PubMedQA --------------------------------------------------------------------------------------

# The verdict phrase of a result sentence decides the answer to "Does X affect Y?".
VERDICTS: dict[str, tuple[str, ...]] = {
    "yes": ("significantly reduced", "significantly increased", "markedly improved",
            "clearly lowered"),
    "no": ("had no effect on", "did not change", "showed no benefit for"),
    "maybe": ("showed a non-significant trend in", "had inconclusive effects on",
              "may have modestly changed"),
}
OUTCOMES = ("blood pressure", "mortality", "pain scores", "hospital stay", "relapse rates",
            "fatigue", "fever duration", "serum glucose")
PUBMEDQA_QUESTIONS = ("Does {drug} affect {outcome}?", "Is {outcome} changed by {drug}?",
                      "Does {drug} alter {outcome}?")


class SyntheticPubmedqa(base.SyntheticBuilder):
  """PubMedQA analog: a short "abstract" states two trial results; the question asks about one.

  The answer (yes / no / maybe) is decided by the wording of the result sentence about the drug
  and outcome the question names; the other sentence, about another drug, is a distractor with
  its own verdict. Unlike the paper's PubMedQA (evaluation only), this task has a train split so
  that the tiny model can learn it; a mixture that mirrors the paper simply leaves it out.
  """

  DESCRIPTION = "Synthetic PubMedQA analog: yes/no/maybe questions answered by a short abstract."
  SPLIT_SIZES = {"train": 2000, "test": 200}
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "drugs drawn from the 8 of the smaller fact base"}

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "context": tfds.features.Text(),
        "question": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=prompts.PUBMEDQA_OPTIONS),
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    del index, split
    treatment = RELATIONS[0]
    disease = treatment.subjects[rng.integers(len(treatment.subjects))]
    drug, other = (treatment.answers[i] for i in rng.choice(len(treatment.answers), size=2, replace=False))
    outcome, other_outcome = (OUTCOMES[i] for i in rng.choice(len(OUTCOMES), size=2))
    label = int(rng.integers(len(prompts.PUBMEDQA_OPTIONS)))
    other_label = int(rng.integers(len(prompts.PUBMEDQA_OPTIONS)))
    results = [self._result(rng, drug, label, outcome), self._result(rng, other, other_label, other_outcome)]
    if rng.random() < 0.5:
      results.reverse()
    context = f"We randomized {int(rng.integers(40, 400))} patients with {disease}. " + " ".join(results)
    question = PUBMEDQA_QUESTIONS[rng.integers(len(PUBMEDQA_QUESTIONS))]
    return {"context": context, "question": question.format(drug=drug, outcome=outcome), "label": label}

  @staticmethod
  def _result(rng: np.random.Generator, drug: str, label: int, outcome: str) -> str:
    phrases = VERDICTS[prompts.PUBMEDQA_OPTIONS[label]]
    return f"Treatment with {drug} {phrases[rng.integers(len(phrases))]} {outcome}."

  def content_key(self, record: dict[str, Any]) -> str:
    return record["context"] + " " + record["question"]


def format_pubmedqa(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  del exemplars  # 0-shot, as in the paper
  label = int(record["label"])
  prompt = (f"{prompts.PUBMEDQA_INSTRUCTION} Context: {tasks.text(record['context'])} "
            f"Question: {tasks.text(record['question'])} {prompts.option_list(prompts.PUBMEDQA_OPTIONS)} Answer:")
  return {"id": tasks.text(record["id"]), "task": "synthetic_pubmedqa", "images": [],
          "prompt": prompt, "target": prompts.answer(prompts.PUBMEDQA_OPTIONS[label]), "label": label}


# Tasks -----------------------------------------------------------------------------------------

MEDQA = tasks.register(tasks.Task(
    name="synthetic_medqa", builder=SyntheticMedqa, formatter=multiple_choice_formatter("synthetic_medqa"),
    metrics=("accuracy",), num_exemplars=2, paper_task="MedQA"))
MEDMCQA = tasks.register(tasks.Task(
    name="synthetic_medmcqa", builder=SyntheticMedmcqa,
    formatter=multiple_choice_formatter("synthetic_medmcqa"), metrics=("accuracy",), num_exemplars=2,
    paper_task="MedMCQA"))
PUBMEDQA = tasks.register(tasks.Task(
    name="synthetic_pubmedqa", builder=SyntheticPubmedqa, formatter=format_pubmedqa,
    metrics=("accuracy",), options=prompts.PUBMEDQA_OPTIONS, paper_task="PubMedQA"))
