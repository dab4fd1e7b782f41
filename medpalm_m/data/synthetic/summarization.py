"""MIMIC-III report summarization analog: CT/MRI findings -> impression.

A report covers one of the paper's six in-domain exam types. Its findings are 2-5 sentences, each
about one structure, normal or abnormal; every abnormal sentence has a diagnosis template, and the
impression lists the diagnoses of the abnormal sentences in order ("No acute abnormality." when
there is none). `impression` computes it from the findings text alone, so the target is a
deterministic function of the input, with details (side, size, level) copied over.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.synthetic import base

NORMAL_IMPRESSION = "No acute abnormality."

# The details an abnormal finding states and its diagnosis repeats.
_SLOTS: dict[str, tuple[str, ...]] = {
    "side": ("left", "right"),
    "size": ("small", "moderate", "large"),
    "level": ("C5", "C6", "T11", "T12", "L1", "L3", "L4", "L5"),
    "lobe": ("frontal", "parietal", "temporal", "occipital"),
    "territory": ("MCA", "PCA", "ACA"),
    "lung_lobe": ("upper", "lower"),
    "mm": ("4", "6", "8", "12"),
    "cm": ("2", "3", "5"),
    "severity": ("mild", "moderate", "severe"),
}


@dataclasses.dataclass(frozen=True)
class Finding:
  """One structure of a report: normal wordings, and an abnormal wording with its diagnosis."""
  normal: tuple[str, ...]
  abnormal: str  # may use {slot} placeholders from _SLOTS
  diagnosis: str  # same placeholders; the impression sentence

  @functools.cached_property
  def pattern(self) -> re.Pattern[str]:
    """Matches the abnormal sentence and captures its slots (the inverse of filling it)."""
    regex = re.escape(self.abnormal)
    for slot, values in _SLOTS.items():
      regex = regex.replace(re.escape("{" + slot + "}"), f"(?P<{slot}>{'|'.join(map(re.escape, values))})")
    return re.compile(regex)


# Three normal wordings per structure: all-normal reports are common, and with one wording they
# would nearly all recur in train, so the test split (which never repeats train) would hold few.
EXAMS: dict[str, tuple[Finding, ...]] = {
    "CT head": (
        Finding(("There is no intracranial hemorrhage.", "No acute hemorrhage is seen.",
                 "There is no hemorrhage."),
                "There is a {size} hyperdense collection in the {side} {lobe} lobe.",
                "{size} {side} {lobe} intraparenchymal hemorrhage."),
        Finding(("No territorial infarct is seen.", "There is no acute infarct.", "Gray-white differentiation is preserved."),
                "There is hypodensity in the {side} {territory} territory.", "{side} {territory} infarct."),
        Finding(("The ventricles are normal in size.", "The ventricles are not dilated.", "Ventricular size is normal."),
                "The ventricles are dilated.", "Hydrocephalus."),
        Finding(("There is no midline shift.", "Midline structures are centered.", "No mass effect is seen."),
                "There is {mm} mm of midline shift.", "{mm} mm midline shift."),
        Finding(("The calvarium is intact.", "No skull fracture is seen.", "The bones are unremarkable."),
                "There is a fracture of the {side} {lobe} bone.", "{side} {lobe} bone fracture."),
        Finding(("The paranasal sinuses are clear.", "The sinuses are well aerated.", "The mastoids are clear."),
                "There is mucosal thickening in the {side} maxillary sinus.", "{side} maxillary sinus disease."),
    ),
    "MR head": (
        Finding(("There is no restricted diffusion.", "Diffusion imaging is normal.", "No acute infarct is seen."),
                "There is restricted diffusion in the {side} {territory} territory.",
                "Acute {side} {territory} infarct."),
        Finding(("No mass is seen.", "There is no abnormal enhancement.", "No intracranial mass is present."),
                "There is an enhancing {cm} cm mass in the {side} {lobe} lobe.", "{cm} cm {side} {lobe} mass."),
        Finding(("The ventricles are normal in size.", "The ventricles are not dilated.", "Ventricular size is normal."),
                "The ventricles are dilated.", "Hydrocephalus."),
        Finding(("The white matter is normal.", "White matter signal is unremarkable.", "No white matter lesion is seen."),
                "There are scattered white matter hyperintensities.", "Chronic small vessel disease."),
        Finding(("There is no hemorrhage.", "No blood products are seen.", "Susceptibility imaging is normal."),
                "There is a {size} area of susceptibility in the {side} {lobe} lobe.",
                "{size} {side} {lobe} hemorrhage."),
        Finding(("The paranasal sinuses are clear.", "The sinuses are well aerated.", "The mastoids are clear."),
                "There is mucosal thickening in the {side} maxillary sinus.", "{side} maxillary sinus disease."),
    ),
    "CT chest": (
        Finding(("The lungs are clear.", "There is no consolidation.", "No airspace disease is seen."),
                "There is consolidation in the {side} {lung_lobe} lobe.", "{side} {lung_lobe} lobe pneumonia."),
        Finding(("No pulmonary nodule is seen.", "There are no nodules.", "No suspicious nodule is present."),
                "There is a {mm} mm nodule in the {side} {lung_lobe} lobe.", "{mm} mm {side} {lung_lobe} lobe nodule."),
        Finding(("There is no pleural effusion.", "No effusion is seen.", "The pleural spaces are clear."),
                "There is a {size} {side} pleural effusion.", "{size} {side} pleural effusion."),
        Finding(("There is no pneumothorax.", "No pneumothorax is seen.", "The lungs are fully expanded."),
                "There is a {size} {side} pneumothorax.", "{size} {side} pneumothorax."),
        Finding(("The heart is normal in size.", "Heart size is normal.", "There is no pericardial effusion."),
                "The heart is enlarged.", "Cardiomegaly."),
        Finding(("There is no lymphadenopathy.", "No enlarged lymph nodes are seen.", "The mediastinum is normal."),
                "There are enlarged mediastinal lymph nodes.", "Mediastinal lymphadenopathy."),
    ),
    "CT abdomen": (
        Finding(("The liver is unremarkable.", "The liver is normal.", "No focal liver lesion is seen."),
                "There is a {cm} cm hypodense lesion in the {side} hepatic lobe.", "{cm} cm {side} hepatic lesion."),
        Finding(("The gallbladder is normal.", "There are no gallstones.", "The gallbladder is unremarkable."),
                "There are gallstones with gallbladder wall thickening.", "Acute cholecystitis."),
        Finding(("The kidneys are normal.", "There is no hydronephrosis.", "No renal stone is seen."),
                "There is a {mm} mm stone in the {side} kidney.", "{mm} mm {side} renal stone."),
        Finding(("The appendix is normal.", "The appendix is not dilated.", "There is no appendicitis."),
                "The appendix is dilated with surrounding fat stranding.", "Acute appendicitis."),
        Finding(("There is no free fluid.", "No ascites is seen.", "There is no fluid collection."),
                "There is a {size} amount of free fluid.", "{size} ascites."),
        Finding(("The bowel is normal in caliber.", "There is no bowel obstruction.", "Bowel loops are unremarkable."),
                "There are dilated small bowel loops.", "Small bowel obstruction."),
    ),
    "CT spine": (
        Finding(("Vertebral body heights are maintained.", "There is no fracture.", "No compression deformity is seen."),
                "There is a compression fracture of {level}.", "{level} compression fracture."),
        Finding(("Alignment is normal.", "There is no listhesis.", "Spinal alignment is preserved."),
                "There is anterolisthesis at {level}.", "{level} anterolisthesis."),
        Finding(("There is no canal stenosis.", "The spinal canal is patent.", "The canal is normal in caliber."),
                "There is {severity} canal stenosis at {level}.", "{severity} canal stenosis at {level}."),
        Finding(("The prevertebral soft tissues are normal.", "There is no soft tissue swelling.",
                 "The paraspinal soft tissues are unremarkable."),
                "The prevertebral soft tissues are swollen.", "Prevertebral soft tissue swelling."),
        Finding(("The facet joints are normal.", "There is no facet arthropathy.", "The facets are aligned."),
                "There is {severity} facet arthropathy at {level}.", "{severity} facet arthropathy at {level}."),
    ),
    "MR spine": (
        Finding(("The spinal cord signal is normal.", "There is no cord signal abnormality.", "The cord is normal."),
                "There is cord edema at {level}.", "Cord edema at {level}."),
        Finding(("There is no disc herniation.", "There is no disc protrusion.", "The discs are unremarkable."),
                "There is a {side} disc protrusion at {level}.", "{side} {level} disc protrusion."),
        Finding(("There is no canal stenosis.", "The spinal canal is patent.", "The canal is normal in caliber."),
                "There is {severity} canal stenosis at {level}.", "{severity} canal stenosis at {level}."),
        Finding(("The marrow signal is normal.", "There is no marrow edema.", "Bone marrow signal is unremarkable."),
                "There is marrow edema in {level}.", "{level} marrow edema."),
        Finding(("The neural foramina are patent.", "There is no foraminal narrowing.", "The foramina are normal."),
                "There is {severity} {side} foraminal narrowing at {level}.",
                "{severity} {side} foraminal stenosis at {level}."),
    ),
}


_ALL_FINDINGS = tuple(dict.fromkeys(f for findings in EXAMS.values() for f in findings))


def impression(findings: str) -> str:
  """The impression of a findings text: each abnormal sentence's diagnosis, in order, or the normal line.

  Needs no exam type: a wording shared by two exams ("The ventricles are dilated.") has one diagnosis.
  """
  diagnoses = []
  for sentence in re.findall(r"[^.]+\.", findings):
    for finding in _ALL_FINDINGS:
      match = finding.pattern.fullmatch(sentence.strip())
      if match:
        diagnosis = finding.diagnosis.format(**match.groupdict())
        diagnoses.append(diagnosis[0].upper() + diagnosis[1:])
        break
  return " ".join(diagnoses) or NORMAL_IMPRESSION


class SyntheticMimicIii(base.SyntheticBuilder):
  """Findings -> impression for CT/MRI reports of six exam types."""

  DESCRIPTION = "Synthetic MIMIC-III analog: CT/MRI report findings and their impressions."
  SPLIT_SIZES = {"train": 2000, "test": 200}
  ABNORMAL_PROBABILITY = 0.3

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "exam": tfds.features.Text(),
        "findings": tfds.features.Text(),
        "impression": tfds.features.Text(),
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    del index, split
    exam = list(EXAMS)[rng.integers(len(EXAMS))]
    structures = EXAMS[exam]
    count = int(rng.integers(2, min(5, len(structures)) + 1))
    chosen = sorted(rng.choice(len(structures), size=count, replace=False))  # anatomical order
    sentences = []
    for i in chosen:
      finding = structures[i]
      if rng.random() < self.ABNORMAL_PROBABILITY:
        slots = {slot: values[rng.integers(len(values))] for slot, values in _SLOTS.items()}
        sentences.append(finding.abnormal.format(**slots))
      else:
        sentences.append(finding.normal[rng.integers(len(finding.normal))])
    findings = " ".join(sentences)
    return {"exam": exam, "findings": findings, "impression": impression(findings)}

  def content_key(self, record: dict[str, Any]) -> str:
    return record["exam"] + ": " + record["findings"]


def format_summarization(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  del exemplars  # 0-shot, as in the paper
  prompt = f"{prompts.SYNTHETIC_MIMIC_III_INSTRUCTION} Given the findings: {tasks.text(record['findings'])} Q: Summarize the findings. A:"
  return {"id": tasks.text(record["id"]), "task": "synthetic_mimic_iii", "images": [],
          "prompt": prompt, "target": prompts.answer(tasks.text(record["impression"]))}


MIMIC_III = tasks.register(tasks.Task(
    name="synthetic_mimic_iii", builder=SyntheticMimicIii, formatter=format_summarization,
    metrics=("rouge_l", "bleu4", "f1_radgraph"), paper_task="MIMIC-III"))
