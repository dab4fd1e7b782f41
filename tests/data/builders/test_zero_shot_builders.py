"""The zero-shot builders on small hand-made copies of their public layouts, built by real TFDS.

Montgomery County and Shenzhen (NLM): CXR_png/<PREFIX>_NNNN_L.png and ClinicalReadings/ with
each set's own reading format. MIMIC-CXR two-view: the MIMIC-CXR-JPG fixture of
test_imaging_builders with a validate study of two views and a test study of three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from medpalm_m.data import pipeline, prompts, tasks, tokenizer
from medpalm_m.data.builders import base, mimic_cxr_two_view, tuberculosis
from tests.data.builders import test_imaging_builders as imaging

tfds.disable_progress_bar()

# stem -> reading, in each set's own format; the label is the stem's last digit.
MONTGOMERY = {
    "MCUCXR_0001_0": "Patient's Sex: F\nPatient's Age: 045Y\nnormal\n",
    "MCUCXR_0002_0": "Patient's Sex: M\nPatient's Age: 071Y\nnormal\n",
    "MCUCXR_0003_0": "Patient's Sex: F\nPatient's Age: 033Y\n\nnormal \n",
    "MCUCXR_0104_1": "Patient's Sex: M\nPatient's Age: 058Y\nright upper lobe cavitary TB\n",
    "MCUCXR_0195_1": "Patient's Sex: M\nPatient's Age: 028Y\nbilateral upper lobe infiltrates\n",
}
SHENZHEN = {
    "CHNCXR_0001_0": "male 45yrs\nnormal\n",
    "CHNCXR_0002_0": "Female,22yrs\nnormal\n",
    "CHNCXR_0327_1": "male 35yrs\nSTB,ATB in the right upper field\n",
}


def write_tb_set(root: Path, readings: dict[str, str], size: tuple[int, int] = (120, 100)) -> Path:
  """CXR_png/ and ClinicalReadings/ as the NLM zips unpack, plus the files the builder ignores."""
  (root / tuberculosis.IMAGES_DIR).mkdir(parents=True)
  (root / tuberculosis.READINGS_DIR).mkdir()
  (root / "ManualMask").mkdir()
  for n, (stem, reading) in enumerate(readings.items()):
    width, height = size
    Image.fromarray(imaging.left_bright(height, width, seed=n)).save(root / tuberculosis.IMAGES_DIR / f"{stem}.png")
    (root / tuberculosis.READINGS_DIR / f"{stem}.txt").write_text(reading)
  (root / tuberculosis.IMAGES_DIR / "Thumbs.db").write_bytes(b"\0" * 8)
  return root


@pytest.fixture(scope="module")
def montgomery(tmp_path_factory):
  root = tmp_path_factory.mktemp("montgomery")
  manual = write_tb_set(root / "MontgomerySet", MONTGOMERY)
  return root / "tfds", imaging.build(tuberculosis.MontgomeryTb, root / "tfds", manual)


def test_montgomery_counts_labels_readings_and_images(montgomery):
  _, builder = montgomery
  assert set(builder.info.splits) == {"test"}  # evaluation only
  recs = imaging.records(builder, "test")
  assert sorted(recs) == sorted(MONTGOMERY)
  assert {k: int(r["label"]) for k, r in recs.items()} == {k: int(k[-1]) for k in MONTGOMERY}
  tb = recs["MCUCXR_0104_1"]
  assert (imaging.text(tb["sex"]), imaging.text(tb["age"]), imaging.text(tb["reading"])) == (
      "M", "58", "right upper lobe cavitary TB")
  assert imaging.text(tb["view"]) == "PA" and tb["image"].shape == (100, 120, 3)
  imaging.assert_left_bright(tb["image"])


def test_shenzhen_reads_its_own_reading_format(tmp_path):
  manual = write_tb_set(tmp_path / "ChinaSet_AllFiles", SHENZHEN)
  recs = imaging.records(imaging.build(tuberculosis.ShenzhenTb, tmp_path / "tfds", manual), "test")
  assert {k: int(r["label"]) for k, r in recs.items()} == {"CHNCXR_0001_0": 0, "CHNCXR_0002_0": 0,
                                                           "CHNCXR_0327_1": 1}
  assert [(imaging.text(recs[k]["sex"]), imaging.text(recs[k]["age"]), imaging.text(recs[k]["reading"]))
          for k in sorted(recs)] == [("M", "45", "normal"), ("F", "22", "normal"),
                                     ("M", "35", "STB,ATB in the right upper field")]


def test_montgomery_prompt_has_the_text_only_exemplar_and_no_reading(montgomery):
  data_dir, _ = montgomery
  for name, cot in (("montgomery_tb", False), ("montgomery_tb_cot", True)):
    source = pipeline.TaskSource(tasks.get(name), "test", str(data_dir))
    example = next(source[i] for i in range(len(source)) if source[i]["id"] == "MCUCXR_0104_1")
    prompt = example["prompt"]
    assert prompt.startswith(prompts.TUBERCULOSIS_INSTRUCTION)
    assert prompt.count(tokenizer.ESCAPED_IMAGE_MARKER) == 1  # the exemplar's image is text
    assert prompt.count("<img>") - prompt.count(tokenizer.ESCAPED_IMAGE_MARKER) == 1
    assert prompt.endswith("Given the PA view X-ray image <img>. Q: Is tuberculosis indicated by the "
                           "image? (A) No (B) Yes A:")
    assert "cavitary" not in prompt  # the reading would give the answer away
    assert example["target"] == "Yes." and example["label"] == 1 and len(example["images"]) == 1
    assert (prompts.CHAIN_OF_THOUGHT_REQUEST in prompt) == cot
    assert (prompts.FINAL_ANSWER_MARKER in prompt) == cot


def test_tb_missing_images_and_readings_are_listed_or_skipped(tmp_path):
  manual = write_tb_set(tmp_path / "MontgomerySet", MONTGOMERY)
  (manual / "CXR_png" / "MCUCXR_0002_0.png").unlink()
  (manual / "ClinicalReadings" / "MCUCXR_0104_1.txt").unlink()
  with pytest.raises(base.ManualDataError) as error:
    imaging.build(tuberculosis.MontgomeryTb, tmp_path / "tfds", manual)
  message = str(error.value)
  assert "2 files are missing" in message
  assert str(manual / "CXR_png" / "MCUCXR_0002_0.png") in message
  assert str(manual / "ClinicalReadings" / "MCUCXR_0104_1.txt") in message
  builder = imaging.build(tuberculosis.MontgomeryTb, tmp_path / "tfds2", manual, skip_malformed=True)
  assert sorted(imaging.records(builder, "test")) == ["MCUCXR_0001_0", "MCUCXR_0003_0", "MCUCXR_0195_1"]
  assert builder.info.metadata["malformed_skipped"] == 2


def test_tb_corrupt_png_and_bad_names_are_named_by_their_file(tmp_path):
  manual = write_tb_set(tmp_path / "MontgomerySet", MONTGOMERY)
  corrupt = manual / "CXR_png" / "MCUCXR_0003_0.png"
  corrupt.write_bytes(corrupt.read_bytes()[:60])  # a truncated download
  with pytest.raises(base.MalformedRecordError) as error:
    imaging.build(tuberculosis.MontgomeryTb, tmp_path / "tfds", manual)
  assert str(corrupt) in str(error.value) and "cannot decode" in str(error.value)
  badly_named = manual / "CXR_png" / "MCUCXR_0009_2.png"  # label 2 does not exist
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(badly_named)
  builder = imaging.build(tuberculosis.MontgomeryTb, tmp_path / "tfds2", manual, skip_malformed=True)
  assert sorted(imaging.records(builder, "test")) == ["MCUCXR_0001_0", "MCUCXR_0002_0", "MCUCXR_0104_1",
                                                       "MCUCXR_0195_1"]
  reasons = builder.info.metadata["malformed_examples"]
  assert len(reasons) == 2 and any(str(badly_named) in r for r in reasons)
  assert any(str(corrupt) in r for r in reasons)


def test_tb_empty_reading_is_malformed(tmp_path):
  manual = write_tb_set(tmp_path / "MontgomerySet", {**MONTGOMERY, "MCUCXR_0001_0": "Patient's Sex: F\n\n"})
  with pytest.raises(base.MalformedRecordError, match="MCUCXR_0001_0.txt: ValueError: the reading has no text"):
    imaging.build(tuberculosis.MontgomeryTb, tmp_path / "tfds", manual)


def test_tb_missing_directory_lists_both_folders(tmp_path):
  with pytest.raises(base.ManualDataError) as error:
    imaging.build(tuberculosis.ShenzhenTb, tmp_path / "tfds", tmp_path / "nowhere")
  assert "CXR_png/*.png" in str(error.value) and "ClinicalReadings/*.txt" in str(error.value)


# MIMIC-CXR two-view ---------------------------------------------------------------------------
VALIDATE_PAIR = ("10002000", "58000001", "validate",
                 [("aaaa0001-00000000-00000000-00000000-00000001", "PA"),
                  ("aaaa0002-00000000-00000000-00000000-00000002", "LATERAL")],
                 " INDICATION:  Fever.\n\n FINDINGS:  Heart size is normal. Lungs are clear.\n", None)
THREE_VIEW_TEST = ("10002001", "58000002", "test",
                   [("bbbb0001-00000000-00000000-00000000-00000001", "PA"),
                    ("bbbb0002-00000000-00000000-00000000-00000002", "AP"),
                    ("bbbb0003-00000000-00000000-00000000-00000003", "LATERAL")],
                   " FINDINGS:  Small left effusion.\n", None)


@pytest.fixture()
def mimic_two_view_manual(tmp_path, monkeypatch):
  monkeypatch.setattr(imaging, "MIMIC_STUDIES", [*imaging.MIMIC_STUDIES, VALIDATE_PAIR, THREE_VIEW_TEST])
  return imaging.write_mimic_cxr(tmp_path / "manual")


def test_mimic_two_view_keeps_studies_of_one_frontal_and_one_lateral(mimic_two_view_manual, tmp_path):
  builder = imaging.build(mimic_cxr_two_view.MimicCxrTwoView, tmp_path / "tfds", mimic_two_view_manual)
  assert set(builder.info.splits) == {"validate", "test"}  # nothing to train on
  test = imaging.records(builder, "test")
  assert sorted(test) == ["51234567"]  # AP + LL; the PA + AP + LATERAL study is left out
  study = test["51234567"]
  assert imaging.text(study["frontal_view"]) == "AP"
  assert imaging.text(study["findings"]) == "Mild bilateral apical scarring. Normal size of the cardiac silhouette."
  assert study["frontal_image"].shape == study["lateral_image"].shape
  assert study["frontal_image"].shape[0] == 224 and study["frontal_image"].shape[2] == 3
  assert sorted(imaging.records(builder, "validate")) == ["58000001"]
  example = pipeline.TaskSource(mimic_cxr_two_view.TASK, "test", str(tmp_path / "tfds"))[0]
  prompt = example["prompt"]
  assert len(example["images"]) == 2 and prompt.count(tokenizer.ESCAPED_IMAGE_MARKER) == 2  # exemplar
  assert prompt.count("<img>") - prompt.count(tokenizer.ESCAPED_IMAGE_MARKER) == 2
  assert example["prompt"].endswith(
      "Given the AP view X-ray image <img>. Given the LATERAL view X-ray image <img>. Reason for the "
      "study: Amiodarone routine surveillance. Q: Describe the findings in the image following the "
      "instructions. A:")
  assert "Heart size is normal. Lungs are clear." in example["prompt"]  # the validate exemplar


def test_mimic_two_view_missing_image_is_listed(mimic_two_view_manual, tmp_path):
  lateral = next(mimic_two_view_manual.glob("files/p10/p10001122/s51234567/b5c5d5e5-*.jpg"))
  lateral.unlink()
  with pytest.raises(base.ManualDataError, match=str(lateral)):
    imaging.build(mimic_cxr_two_view.MimicCxrTwoView, tmp_path / "tfds", mimic_two_view_manual)
