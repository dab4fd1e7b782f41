"""MIMIC-III radiology report summarization (findings -> impression) from the MIMIC-RRS files.

MIMIC-III is credentialed (PhysioNet); the summarization split is the processed release of
Delbrouck et al. 2022 / Chen et al. 2023 ("MIMIC-RRS", built with ViLMedic from
`NOTEEVENTS.csv.gz`), which the credentialed user obtains or regenerates. The file format read:

    <manual_dir>/<MODALITY_ANATOMY>/{train,validate,test}.findings.tok
    <manual_dir>/<MODALITY_ANATOMY>/{train,validate,test}.impression.tok

UTF-8 text, one report per line: line i of `X.findings.tok` is the findings section whose
impression is line i of `X.impression.tok` (the same number of lines). Expected sizes
(eval_and_data.md): 58,405 train / 7,413 validate / 13,057 test. A line with empty findings or
impression is malformed.

The paper's selection (Tu et al. 2023, A.1):
* train, validation and test hold the six in-domain modality/anatomy pairs (`IN_DOMAIN`);
* the five rarer pairs (`OUT_OF_DOMAIN`: `MR_spine`, `CT_sinus`, `MR_abdomen`, `MR_pelvis`,
  `MR_neck`) are only evaluated: their test files form the `ood_test` split, read by the
  evaluation-only task `mimic_iii_ood` (absent where no such folder is present);
* findings longer than 600 tokens are dropped, in every split, and counted (the build's report,
  `metadata.json` `left_out`). The files are tokenized text (".tok"), so a token is a
  whitespace-separated piece.
The build reads the in-domain folders present and names those missing (stderr and
`metadata.json` `missing_folders`); other folders are named and not read.

Prompt (0-shot, Tu et al. 2023): "Instructions: You are a helpful radiology assistant. The
following are questions about radiology reports. Summarize the findings in the report into
diagnostic statements. Given the findings: {findings}. Q: Summarize the findings. A:" -> the
impression in the answer format (`prompts.answer`). The "." after the findings is left out when
the findings already end with one.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.tokenizer import escape_image_markers

IN_DOMAIN = ("CT_head", "CT_abdomen", "CT_chest", "MR_head", "CT_spine", "CT_neck")
OUT_OF_DOMAIN = ("MR_spine", "CT_sinus", "MR_abdomen", "MR_pelvis", "MR_neck")
SPLITS = {"train": "train", "validation": "validate", "test": "test"}  # TFDS split -> file prefix
OOD_SPLIT = "ood_test"  # the out-of-domain folders' test files
MAX_FINDINGS_TOKENS = 600


def _files(folder: str, prefix: str) -> tuple[str, str]:
  return (os.path.join(folder, f"{prefix}.findings.tok"), os.path.join(folder, f"{prefix}.impression.tok"))


class MimicIii(base.ManualBuilder):
  """Findings -> impression pairs of MIMIC-III CT/MR reports, with their modality_anatomy."""

  DESCRIPTION = "MIMIC-III radiology report summarization (MIMIC-RRS): findings -> impression."
  HOMEPAGE = "https://physionet.org/content/mimiciii/1.4/"
  OBTAIN = ("Credentialed PhysioNet access to MIMIC-III is required. Create the MIMIC-RRS files "
            "(Chen et al., ACL 2023; ViLMedic's RRS preprocessing of NOTEEVENTS.csv.gz) and use the "
            "folder holding one sub-folder per modality_anatomy as the manual directory.")
  # Any one in-domain folder will do; the build names the ones missing.
  REQUIRED_FILES = (tuple(_files(folder, "train")[0] for folder in IN_DOMAIN),)
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "The paper's selection: in-domain pairs only in train/validation/test, the "
                            "rarer pairs in ood_test, findings over 600 tokens dropped."}
  CITATION = ("Chen et al., Toward Expanding the Scope of Radiology Report Summarization to Multiple "
              "Anatomies and Modalities, ACL 2023; Johnson et al., MIMIC-III, Scientific Data 2016.")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "exam": tfds.features.Text(),  # modality_anatomy, e.g. CT_head
        "findings": tfds.features.Text(),
        "impression": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    folders = {name for name in os.listdir(manual_dir) if os.path.isdir(os.path.join(manual_dir, name))}
    in_domain = [f for f in IN_DOMAIN if f in folders]
    out_of_domain = [f for f in OUT_OF_DOMAIN if f in folders]
    missing = [f for f in IN_DOMAIN + OUT_OF_DOMAIN if f not in folders]
    others = sorted(folders - set(IN_DOMAIN) - set(OUT_OF_DOMAIN))
    if missing or others:
      print(f"{self.name}: building from {', '.join(in_domain + out_of_domain)} in {manual_dir}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not modality_anatomy folders of MIMIC-RRS, not read: {', '.join(others)}" if others else ""),
            file=sys.stderr, flush=True)
    self.info.metadata["missing_folders"] = missing
    splits = {split: self._records(manual_dir, in_domain, prefix, split) for split, prefix in SPLITS.items()}
    if any(os.path.exists(_files(os.path.join(manual_dir, f), "test")[0]) for f in out_of_domain):
      splits[OOD_SPLIT] = self._records(manual_dir, out_of_domain, "test", OOD_SPLIT)
    return splits

  def _records(self, manual_dir: str, folders: Sequence[str], prefix: str,
               split: str) -> Iterator[base.KeyedRecord]:
    for exam in folders:
      findings_path, impression_path = _files(os.path.join(manual_dir, exam), prefix)
      if not os.path.exists(findings_path) and not os.path.exists(impression_path):
        continue  # a folder without this split
      for path in (findings_path, impression_path):
        if not os.path.exists(path):
          raise base.ManualDataError(f"{self.name}: {path} is missing; each "
                                     f"{prefix}.findings.tok needs its {prefix}.impression.tok")
      with open(findings_path, encoding="utf-8") as findings_file, \
           open(impression_path, encoding="utf-8") as impression_file:
        for line, (findings, impression) in enumerate(itertools.zip_longest(findings_file, impression_file), 1):
          if findings is None or impression is None:
            shorter = findings_path if findings is None else impression_path
            raise base.MalformedRecordError(shorter, line, "the findings and impression files have "
                                            "different numbers of lines, so their reports cannot be paired")
          findings, impression = findings.strip(), impression.strip()
          if not findings or not impression:
            empty = findings_path if not findings else impression_path
            self.malformed(empty, line, "empty report section")
            continue
          if len(findings.split()) > MAX_FINDINGS_TOKENS:
            self.leave_out(split, f"findings over {MAX_FINDINGS_TOKENS} tokens")
            continue
          key = f"{exam}-{prefix}-{line}"
          yield key, {"id": f"mimic_iii-{key}", "exam": exam, "findings": findings, "impression": impression}


def summarization_formatter(task_name: str):

  def format_summarization(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    del exemplars  # 0-shot, as in the paper
    findings = escape_image_markers(tasks.text(record["findings"]))  # report text, never an image slot
    stop = "" if findings.endswith(".") else "."
    prompt = f"{prompts.MIMIC_III_INSTRUCTION} Given the findings: {findings}{stop} Q: Summarize the findings. A:"
    return {"id": tasks.text(record["id"]), "task": task_name, "images": [], "prompt": prompt,
            "target": prompts.answer(tasks.text(record["impression"]))}

  return format_summarization


METRICS = ("rouge_l", "bleu4", "f1_radgraph")
MIMIC_III = tasks.register(tasks.Task(
    name="mimic_iii", builder=MimicIii, formatter=summarization_formatter("mimic_iii"),
    metrics=METRICS, paper_task="MIMIC-III"))
# The paper keeps the five rarer modality/anatomy pairs for out-of-distribution evaluation only
# (no number of its is in Table 2).
MIMIC_III_OOD = tasks.register(tasks.Task(
    name="mimic_iii_ood", builder=MimicIii, formatter=summarization_formatter("mimic_iii_ood"),
    metrics=METRICS, splits={"test": OOD_SPLIT}))
