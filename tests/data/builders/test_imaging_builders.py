"""The imaging builders on fixtures written in each dataset's on-disk form, built by real TFDS.

MIMIC-CXR-JPG (gzipped CSVs, files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg, mimic-cxr-reports.zip),
PAD-UFES-20 (metadata.csv, images/imgs_part_N/*.png), VinDr-Mammo (breast-level_annotations.csv,
images/<study>/<image>.dicom) and CBIS-DDSM (case-description CSVs and the TCIA DICOM tree whose
file names differ from the CSVs'). The `write_*` functions are also used by benchmarks/builders.py
with larger counts and image sizes.
"""

from __future__ import annotations

import csv
import gzip
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medpalm_m.data import pipeline, prompts, tasks, tokenizer
from medpalm_m.data.builders import base, cbis_ddsm, mimic_cxr, pad_ufes_20, vindr_mammo

tfds.disable_progress_bar()


# On-disk writers ------------------------------------------------------------------------------
def write_csv(path: Path, header: list[str], rows: list[list], gz: bool = False) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  opener = gzip.open if gz else open
  with opener(path, "wt", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                window: tuple[int, int] | None = None, study_uid: str | None = None,
                series_uid: str | None = None, description: str | None = None) -> None:
  meta = FileMetaDataset()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.MediaStorageSOPClassUID = pydicom.uid.DigitalMammographyXRayImageStorageForPresentation
  meta.MediaStorageSOPInstanceUID = generate_uid()
  ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
  ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
  ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
  ds.Modality = "MG"
  if description is not None:
    ds.SeriesDescription = description
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
  if window is not None:
    ds.WindowCenter, ds.WindowWidth = window
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  path.parent.mkdir(parents=True, exist_ok=True)
  ds.save_as(str(path), enforce_file_format=True)


def left_bright(height: int, width: int, channels: int = 0, seed: int = 0) -> np.ndarray:
  """uint8 image whose left half is bright (200) and right half dark (40), plus faint noise."""
  rng = np.random.default_rng(seed)
  image = np.full((height, width), 40, np.int16)
  image[:, : width // 2] = 200
  image += rng.integers(-8, 9, image.shape, dtype=np.int16)
  image = np.clip(image, 0, 255).astype(np.uint8)
  return np.repeat(image[..., None], channels, axis=-1) if channels else image


def assert_left_bright(image: np.ndarray) -> None:
  image = np.asarray(image, np.float64)
  w = image.shape[1]
  assert image[:, : w // 3].mean() > 150 and image[:, -w // 3:].mean() < 90


# MIMIC-CXR ------------------------------------------------------------------------------------
MIMIC_REPORT_1 = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___F with new onset ascites  // eval for infection
 
 TECHNIQUE:  Chest PA and lateral
 
 COMPARISON:  None.
 
 FINDINGS: 
 
 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.
 
 IMPRESSION: 
 
 No acute cardiopulmonary process.
"""
MIMIC_FINDINGS_1 = ("There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular "
                    "opacities that most likely represent nipple shadows. The cardiomediastinal "
                    "silhouette is normal.")
MIMIC_REPORT_TEST = """ WET READ: ___ ___ 3:12 PM
  No pneumonia.
 
                                 FINAL REPORT
 INDICATION:  Amiodarone routine surveillance.
 
 FINDINGS:  Mild bilateral apical scarring.  Normal size of the cardiac
 silhouette.
 
 IMPRESSION:  No change.
"""
CHEXPERT_COLUMNS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
                    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion",
                    "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices"]
# subject, study, split, [(dicom_id, ViewPosition)], report, CheXpert values by column (None: no row)
MIMIC_STUDIES = [
    ("10000032", "50414267", "train",
     [("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "PA"),
      ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "LATERAL")], MIMIC_REPORT_1,
     {"Atelectasis": "1.0", "Cardiomegaly": "-1.0", "Edema": "0.0", "Pleural Effusion": "1.0"}),
    ("10000764", "57375967", "train", [("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "AP")],
     " FINAL REPORT\n HISTORY:  Cough.\n \n IMPRESSION:  No acute intrathoracic process.\n",
     {"Consolidation": "1.0", "Pneumonia": "-1.0"}),
    ("10000898", "50771383", "validate", [("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "PA")],
     " FINDINGS:  " + "The lungs are clear. " * 45 + "\n", None),
    ("10000935", "55555555", "validate", [("50b4fa4d-e6dd6b29-1cd0e3d4-3b4b8a8b-2e0d5a3b", "PA")],
     (" REASON FOR EXAMINATION:  Evaluate for pneumonia.\n\n FINDINGS:  PA view of the chest. Heart "
      "size is normal.  Lungs are clear.\n\n IMPRESSION:  Normal.\n"), {"No Finding": "1.0"}),
    ("10001122", "51234567", "test",
     [("8959e402-2175d68d-edba5a6c-baab51c3-9359f700", "AP"),
      ("b5c5d5e5-aaaa1111-bbbb2222-cccc3333-dddd4444", "LL")], MIMIC_REPORT_TEST,
     {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0"}),
]


def write_mimic_cxr(root: Path, image_size: tuple[int, int] = (300, 360), extra_train_studies: int = 0,
                    extra_labels=(("Edema", "1.0"),)) -> Path:
  """MIMIC-CXR-JPG + mimic-cxr-reports.zip as PhysioNet ships them; images are portrait JPEGs."""
  studies = list(MIMIC_STUDIES)
  for k in range(extra_train_studies):  # benchmark scale: more train studies like the first one
    studies.append((f"1{k + 2000000:07d}", f"6{k:07d}", "train",
                    [(f"{k:08x}-0000aaaa-bbbb0000-cccc1111-dddd2222", "PA")], MIMIC_REPORT_1,
                    dict(extra_labels)))
  metadata, splits, chexpert = [], [], []
  root.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(root / "mimic-cxr-reports.zip", "w") as reports:
    for n, (subject, study, split, images, report, labels) in enumerate(studies):
      reports.writestr(f"files/p{subject[:2]}/p{subject}/s{study}.txt", report)
      if labels is not None:
        chexpert.append([subject, study] + [labels.get(c, "") for c in CHEXPERT_COLUMNS])
      for dicom_id, view in images:
        width, height = image_size
        metadata.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, height, width, "21800506",
                         "213014.531", "CHEST (PA AND LAT)", "postero-anterior", "Erect"])
        splits.append([dicom_id, study, subject, split])
        path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(left_bright(height, width, seed=n)).save(path, quality=92)
  write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz",
            ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
             "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
             "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"], metadata, gz=True)
  write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], splits, gz=True)
  write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id"] + CHEXPERT_COLUMNS,
            chexpert, gz=True)
  return root


def build(builder_cls, data_dir: Path, manual_dir: Path, **kwargs):
  builder = builder_cls(data_dir=str(data_dir), manual_dir=str(manual_dir), **kwargs)
  builder.download_and_prepare()
  return builder


def records(builder, split: str) -> dict[str, dict]:
  source = builder.as_data_source(split)
  return {bytes(r["id"]).decode(): r for r in (source[i] for i in range(len(source)))}


def text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
  root = tmp_path_factory.mktemp("mimic")
  manual = write_mimic_cxr(root / "manual")
  data_dir = root / "tfds"
  return (data_dir, build(mimic_cxr.MimicCxrReport, data_dir, manual),
          build(mimic_cxr.MimicCxrClassification, data_dir, manual))


REPORT_INSTRUCTION = (  # [Med-PaLM M Fig. 2], written out independently of the module
    "Instructions: You are a helpful radiology assistant. Describe what lines, tubes, and devices are "
    "present and each of their locations. Describe if pneumothorax is present; if present, describe "
    "size on each side. Describe if pleural effusion is present; if present, describe amount on each "
    "side. Describe if lung opacity (atelectasis, fibrosis, consolidation, infiltrate, lung mass, "
    "pneumonia, pulmonary edema) is present; if present, describe kinds and locations. Describe the "
    "cardiac silhouette size. Describe the width and contours of the mediastinum. Describe if hilar "
    "enlargement is present; if enlarged, describe side. Describe what fractures or other skeletal "
    "abnormalities are present.")


def test_mimic_cxr_report_records_splits_and_findings(mimic):
  _, report, _ = mimic
  train, validate, test = (records(report, s) for s in ("train", "validate", "test"))
  # s57375967 has no FINDINGS section and s50771383's findings exceed 800 characters: left out.
  assert sorted(train) == ["02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
                           "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"]
  assert list(validate) == ["50b4fa4d-e6dd6b29-1cd0e3d4-3b4b8a8b-2e0d5a3b"]
  assert sorted(test) == ["8959e402-2175d68d-edba5a6c-baab51c3-9359f700",
                          "b5c5d5e5-aaaa1111-bbbb2222-cccc3333-dddd4444"]
  pa = train["02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"]
  assert text(pa["findings"]) == MIMIC_FINDINGS_1
  assert text(pa["indication"]) == "___F with new onset ascites // eval for infection"
  assert text(pa["view"]) == "PA" and text(pa["study_id"]) == "50414267"
  assert text(train["174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"]["view"]) == "LATERAL"
  assert text(test["b5c5d5e5-aaaa1111-bbbb2222-cccc3333-dddd4444"]["view"]) == "LATERAL"  # LL
  assert text(validate["50b4fa4d-e6dd6b29-1cd0e3d4-3b4b8a8b-2e0d5a3b"]["indication"]) == "Evaluate for pneumonia."
  # 300x360 portrait JPEGs are stored RGB with their longer side at the model's 224.
  image = np.asarray(pa["image"])
  assert image.shape == (224, 187, 3) and image.dtype == np.uint8
  assert_left_bright(image)
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_mimic_cxr_report_prompt_is_the_papers(mimic):
  data_dir, _, _ = mimic
  source = pipeline.TaskSource(tasks.get("mimic_cxr_report"), "test", str(data_dir))
  index = next(i for i in range(len(source))
               if text(source.records[i]["id"]) == "8959e402-2175d68d-edba5a6c-baab51c3-9359f700")
  example = source[index]
  exemplar = source.exemplars[source.exemplar_indices(index)[0]]
  assert example["prompt"] == (
      f"{REPORT_INSTRUCTION} Given the {text(exemplar['view'])} view X-ray image \\<img>. Reason for "
      "the study: ___F with new onset ascites // eval for infection. Q: Describe the findings in the "
      f"image following the instructions. A: {MIMIC_FINDINGS_1} Given the AP view X-ray image <img>. "
      "Reason for the study: Amiodarone routine surveillance. Q: Describe the findings in the image "
      "following the instructions. A:")
  assert example["target"] == "Mild bilateral apical scarring. Normal size of the cardiac silhouette."
  assert tokenizer.count_image_markers(example["prompt"]) == 1  # the exemplar's <img> is text
  assert len(example["images"]) == 1 and example["images"][0].shape == (224, 187, 3)


def test_mimic_cxr_classification_labels_conditions_and_upsampling(mimic):
  data_dir, _, classification = mimic
  train, validate, test = (records(classification, s) for s in ("train", "validate", "test"))
  # Train asks one condition per image in turn; the consolidation positive is repeated twice.
  assert {k: int(r["label"]) for k, r in train.items()} == {
      "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014-atelectasis": 1,
      "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962-cardiomegaly": 0,  # uncertain (-1.0) is No
      "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4-consolidation": 1,
      "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4-consolidation-copy1": 1,
  }
  # Validate and test ask all five conditions; s50771383 has no CheXpert row and is left out.
  assert len(validate) == 5 and all(int(r["label"]) == 0 for r in validate.values())
  assert len(test) == 10
  ap = "8959e402-2175d68d-edba5a6c-baab51c3-9359f700"
  assert {text(test[f"{ap}-{c.replace(' ', '_')}"]["condition"]): int(test[f"{ap}-{c.replace(' ', '_')}"]["label"])
          for c in ("atelectasis", "cardiomegaly", "consolidation", "edema", "pleural effusion")} == {
              "atelectasis": 0, "cardiomegaly": 1, "consolidation": 0, "edema": 0, "pleural effusion": 0}

  source = pipeline.TaskSource(tasks.get("mimic_cxr_classification"), "test", str(data_dir))
  index = next(i for i in range(len(source)) if text(source.records[i]["id"]) == f"{ap}-cardiomegaly")
  example = source[index]
  exemplar = source.exemplars[source.exemplar_indices(index)[0]]
  exemplar_answer = "Yes." if int(exemplar["label"]) else "No."  # the paper's answer format
  assert example["prompt"] == (
      "Instructions: You are a helpful radiology assistant. The following are questions about findings "
      "in chest X-ray in different views. Identify if a specific type of abnormality is shown in the "
      f"X-ray. Given the {text(exemplar['view'])} view X-ray image \\<img>. Q: Is "
      f"{text(exemplar['condition'])} indicated by the image? (A) No (B) Yes A: {exemplar_answer} "
      "Given the AP view X-ray image <img>. Q: Is cardiomegaly indicated by the image? (A) No (B) Yes A:")
  assert (example["target"], example["label"], example["condition"]) == ("Yes.", 1, "cardiomegaly")
  assert tasks.get("mimic_cxr_classification").metrics == ("macro_auc", "positive_f1")


def test_mimic_cxr_classification_trains_on_eleven_conditions_and_upsamples_four(tmp_path):
  # 3 images above + 9 more, every condition positive: train asks the 11 conditions in turn.
  manual = write_mimic_cxr(tmp_path / "manual", image_size=(40, 48), extra_train_studies=9,
                           extra_labels=[(c, "1.0") for c in CHEXPERT_COLUMNS])
  classification = build(mimic_cxr.MimicCxrClassification, tmp_path / "tfds", manual)
  train = records(classification, "train")
  asked = {}
  for record in train.values():
    asked[text(record["condition"])] = asked.get(text(record["condition"]), 0) + 1
  assert asked == {"atelectasis": 2, "cardiomegaly": 1, "consolidation": 2, "edema": 1, "pleural effusion": 1,
                   "enlarged cardiomediastinum": 2, "fracture": 2, "lung lesion": 1, "lung opacity": 1,
                   "pneumonia": 2, "pneumothorax": 1}  # 12 images; 4 up-sampled positives twice
  assert "pleural other" not in asked and "support devices" not in asked and "no finding" not in asked
  assert {text(r["condition"]) for r in records(classification, "test").values()} == set(mimic_cxr.SCORED_CONDITIONS)


def test_mimic_cxr_report_sections_from_an_unzipped_tree(tmp_path):
  (tmp_path / "files" / "p10" / "p10000032").mkdir(parents=True)
  (tmp_path / "files" / "p10" / "p10000032" / "s50414267.txt").write_text(MIMIC_REPORT_1)
  reports = mimic_cxr._Reports(str(tmp_path))
  assert mimic_cxr.findings_and_indication(reports.read("10000032", "50414267")) == (
      MIMIC_FINDINGS_1, "___F with new onset ascites // eval for infection")
  assert reports.read("10000032", "99999999") is None


def test_mimic_cxr_missing_images_are_listed_or_skipped_and_counted(tmp_path):
  manual = write_mimic_cxr(tmp_path / "manual")
  missing = manual / "files/p10/p10001122/s51234567/8959e402-2175d68d-edba5a6c-baab51c3-9359f700.jpg"
  missing.unlink()
  with pytest.raises(base.ManualDataError) as error:
    build(mimic_cxr.MimicCxrReport, tmp_path / "tfds", manual)
  assert str(missing) in str(error.value) and "1 of 7 files" in str(error.value)
  assert "mimic-cxr-2.0.0-metadata.csv.gz:" in str(error.value)  # the line that names it
  # The hint names the flags a user types, not the builder's keyword argument.
  assert "--config.data.skip_malformed=True" in str(error.value) and "--skip_malformed" in str(error.value)
  builder = build(mimic_cxr.MimicCxrReport, tmp_path / "tfds2", manual, skip_malformed=True)
  assert list(records(builder, "test")) == ["b5c5d5e5-aaaa1111-bbbb2222-cccc3333-dddd4444"]
  assert builder.info.metadata["malformed_skipped"] == 1


# PAD-UFES-20 ----------------------------------------------------------------------------------
PAD_COLUMNS = ["patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
               "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
               "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic",
               "itch", "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed"]
# The two patients of Med-PaLM M's Fig. 2: full history, and one whose clinical fields are blank.
PAD_FIGURE_ROWS = [
    ["PAT_46", "881", "False", "False", "POMERANIA", "POMERANIA", "51", "False", "FEMALE", "True", "False",
     "True", "True", "1.0", "BACK", "12.0", "8.0", "BCC", "False", "False", "False", "True", "False",
     "False", "PAT_46_881_14.png", "True"],
    ["PAT_1516", "1765", "", "", "", "", "39", "", "", "", "", "", "", "", "NECK", "", "", "NEV", "False",
     "True", "False", "UNK", "False", "True", "PAT_1516_1765_530.png", "False"],
]
PAD_FIGURE_1 = (
    "Patient History: Age: 51, Gender: female, Smoke: false, Drink: false, Family skin cancer history: "
    "true, Family any cancer history: false, Lesion region: back, Lesion itch: false, Lesion grew: "
    "false, Lesion bled: false, Lesion elevation: false, Fitzpatrick scale: 1.0, Diameters (mm): "
    "[12.0, 8.0].")
PAD_FIGURE_2 = (
    "Patient History: Age: 39, Gender: unknown, Smoke: unknown, Drink: unknown, Family skin cancer "
    "history: unknown, Family any cancer history: unknown, Lesion region: neck, Lesion itch: false, "
    "Lesion grew: true, Lesion bled: false, Lesion elevation: true, Fitzpatrick scale: unknown, "
    "Diameters (mm): [unknown, unknown].")
PAD_CODES = ["NEV", "BCC", "SCC", "ACK", "SEK", "MEL"]


def write_pad_ufes_20(root: Path, per_class: int = 5, image_size: tuple[int, int] = (48, 40)) -> Path:
  """metadata.csv and PNGs spread over images/imgs_part_{1,2} as in the Mendeley release."""
  rows = [list(r) for r in PAD_FIGURE_ROWS]
  counts = {"BCC": 1, "NEV": 1}
  n = 0
  for code in PAD_CODES:
    while counts.get(code, 0) < per_class:
      counts[code] = counts.get(code, 0) + 1
      n += 1
      rows.append([f"PAT_{n}", str(1000 + n), "True", "False", "GERMANY", "", str(20 + n), "False", "MALE",
                   "False", "True", "True", "False", "2.0", "FACE", "5.0", "4.0", code, "True", "UNK",
                   "False", "False", "False", "True", f"PAT_{n}_{1000 + n}_{n}.png", "True"])
  for k, row in enumerate(rows):
    path = root / "images" / f"imgs_part_{1 + k % 2}" / row[PAD_COLUMNS.index("img_id")]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Phone photos: RGB, some with an alpha channel.
    mode = "RGBA" if k % 3 == 0 else "RGB"
    Image.fromarray(left_bright(image_size[1], image_size[0], 4 if mode == "RGBA" else 3, seed=k),
                    mode).save(path)
  write_csv(root / "metadata.csv", PAD_COLUMNS, rows)
  return root


@pytest.fixture(scope="module")
def pad(tmp_path_factory):
  root = tmp_path_factory.mktemp("pad")
  manual = write_pad_ufes_20(root / "manual")
  return root / "tfds", build(pad_ufes_20.PadUfes20, root / "tfds", manual)


def test_pad_ufes_20_stratified_split_labels_and_images(pad):
  _, builder = pad
  train, test = records(builder, "train"), records(builder, "test")
  assert len(train) == 24 and len(test) == 6  # 30 images, 20% test
  assert sorted(int(r["label"]) for r in test.values()) == [0, 1, 2, 3, 4, 5]  # one per class
  bcc = {**train, **test}["PAT_46_881_14"]
  assert int(bcc["label"]) == prompts.SKIN_LESION_CLASSES.index("Basal Cell Carcinoma") == 1
  assert text(bcc["patient_id"]) == "PAT_46" and text(bcc["region"]) == "BACK"
  image = np.asarray(bcc["image"])
  assert image.shape == (40, 48, 3)  # RGBA photo stored as RGB, small images keep their size
  assert_left_bright(image)


def test_pad_ufes_20_split_does_not_depend_on_row_order():
  ids = [f"PAT_{i}_{i}_{i}.png" for i in range(60)]
  labels = [i % 6 for i in range(60)]
  first = pad_ufes_20.split_test_ids(ids, labels)
  assert first == pad_ufes_20.split_test_ids(ids[::-1], labels[::-1]) and len(first) == 12


def test_pad_ufes_20_prompt_is_the_papers_figure(pad):
  _, builder = pad
  everything = {**records(builder, "train"), **records(builder, "test")}
  decoded = {k: pipeline._decode(v) for k, v in everything.items()}
  example = tasks.get("pad_ufes_20").formatter(decoded["PAT_1516_1765_530"], [decoded["PAT_46_881_14"]])
  options = ("(A) Nevus (B) Basal Cell Carcinoma (C) Squamous Cell Carcinoma (D) Actinic Keratosis "
             "(E) Seborrheic Keratosis (F) Melanoma")
  question = "Q: Which of the following is the most likely diagnosis of the patient's skin lesion?"
  assert example["prompt"] == (
      "Instructions: You are a helpful dermatology assistant. The following are questions about skin "
      "lesions. Categorize the skin lesions into the most likely class given the patient history. "
      f"Given \\<img>. {PAD_FIGURE_1} {question} {options} A: Basal Cell Carcinoma. "
      f"Given <img>. {PAD_FIGURE_2} {question} {options} A:")
  assert (example["target"], example["label"]) == ("Nevus.", 0)


def test_pad_ufes_20_malformed_row_names_file_and_line_or_is_skipped(tmp_path):
  manual = write_pad_ufes_20(tmp_path / "manual", per_class=6)
  lines = (manual / "metadata.csv").read_text().splitlines()
  lines[4] = lines[4].replace(",NEV,", ",XYZ,")
  (manual / "metadata.csv").write_text("\n".join(lines) + "\n")
  with pytest.raises(base.MalformedRecordError, match=r"metadata\.csv:5 .*diagnostic 'XYZ'"):
    build(pad_ufes_20.PadUfes20, tmp_path / "tfds", manual)
  builder = build(pad_ufes_20.PadUfes20, tmp_path / "tfds2", manual, skip_malformed=True)
  assert len(records(builder, "train")) + len(records(builder, "test")) == 35
  assert builder.info.metadata["malformed_skipped"] == 1


# VinDr-Mammo ----------------------------------------------------------------------------------
VINDR_COLUMNS = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                 "breast_birads", "breast_density", "split"]
# (image id, laterality, view, BI-RADS, split, photometric)
VINDR_IMAGES = [
    ("d8125545210c08e1b1793a5af6458ee2", "L", "CC", "BI-RADS 1", "training", "MONOCHROME2"),
    ("4d4a1cc0a3b2ea5d4b1c3bb7be1ff51a", "R", "MLO", "BI-RADS 2", "training", "MONOCHROME1"),
    ("9e1cf4d51d0b9c1a8b1b4d9e4a0e8f77", "L", "MLO", "BI-RADS 5", "training", "MONOCHROME2"),
    ("2b1b8e4a1e1d5c2a3b9c8d7e6f5a4b3c", "R", "CC", "BI-RADS 1", "test", "MONOCHROME1"),
    ("7c5f1a2b3c4d5e6f7a8b9c0d1e2f3a4b", "L", "CC", "BI-RADS 4", "test", "MONOCHROME2"),
]


def vindr_pixels(height: int, width: int, photometric: str, seed: int = 0) -> np.ndarray:
  """12-bit pixels that display left-bright: MONOCHROME1 stores the inverse."""
  display = left_bright(height, width, seed=seed).astype(np.float64) * 4095 / 255
  return (4095 - display if photometric == "MONOCHROME1" else display).astype(np.uint16)


def write_vindr_mammo(root: Path, image_size: tuple[int, int] = (480, 600), repeat: int = 1) -> Path:
  rows = []
  for r in range(repeat):
    for k, (image_id, side, view, birads, split, photometric) in enumerate(VINDR_IMAGES):
      image_id = image_id if r == 0 else f"{image_id[:-4]}{r:04d}"
      study_id = f"{k:04d}{r:04d}" + "a" * 24
      width, height = image_size
      rows.append([study_id, "s" + study_id[1:], image_id, side, view, height, width, birads,
                   "DENSITY C", split])
      write_dicom(root / "images" / study_id / f"{image_id}.dicom", vindr_pixels(height, width, photometric, k),
                  photometric, window=(2048, 4096))
  write_csv(root / "breast-level_annotations.csv", VINDR_COLUMNS, rows)
  return root


@pytest.fixture(scope="module")
def vindr(tmp_path_factory):
  root = tmp_path_factory.mktemp("vindr")
  manual = write_vindr_mammo(root / "manual")
  return root / "tfds", build(vindr_mammo.VindrMammo, root / "tfds", manual)


def test_vindr_mammo_birads_split_upsampling_and_dicom_decoding(vindr):
  data_dir, builder = vindr
  train, test = records(builder, "train"), records(builder, "test")
  # BI-RADS 2-5 are repeated x3 in train only.
  assert sorted(train) == sorted(["d8125545210c08e1b1793a5af6458ee2"] + [
      f"{i}{c}" for i in ("4d4a1cc0a3b2ea5d4b1c3bb7be1ff51a", "9e1cf4d51d0b9c1a8b1b4d9e4a0e8f77")
      for c in ("", "-copy1", "-copy2")])
  assert {k: int(r["label"]) for k, r in test.items()} == {
      "2b1b8e4a1e1d5c2a3b9c8d7e6f5a4b3c": 0, "7c5f1a2b3c4d5e6f7a8b9c0d1e2f3a4b": 3}
  assert int(train["9e1cf4d51d0b9c1a8b1b4d9e4a0e8f77-copy2"]["label"]) == 4
  for record in list(train.values()) + list(test.values()):
    image = np.asarray(record["image"])
    assert image.shape == (512, 410, 3)  # 480x600 DICOMs, longer side 512
    assert_left_bright(image)  # MONOCHROME1 files are inverted back

  source = pipeline.TaskSource(tasks.get("vindr_mammo"), "test", str(data_dir))
  index = next(i for i in range(len(source)) if text(source.records[i]["id"]).startswith("2b1b8e4a"))
  example = source[index]
  exemplar = source.exemplars[source.exemplar_indices(index)[0]]
  side = {"L": "left", "R": "right"}[text(exemplar["laterality"])]
  view = {"CC": "craniocaudal", "MLO": "mediolateral oblique"}[text(exemplar["view"])]
  options = "(A) 1 (B) 2 (C) 3 (D) 4 (E) 5"
  assert example["prompt"] == (
      "Instructions: You are a helpful medical assistant. The following are questions about mammography "
      "reading. Provide a breast-level assessment based on the BI-RADS categories. Given mammogram "
      f"image \\<img>. Image view: {side} {view} Q: What is the most likely breast BI-RADS score? "
      f"{options} A: {int(exemplar['label']) + 1}. Given mammogram image <img>. Image view: right "
      f"craniocaudal Q: What is the most likely breast BI-RADS score? {options} A:")
  assert (example["target"], example["label"]) == ("1.", 0)


def test_vindr_mammo_missing_directory_lists_files_and_where_to_get_them(tmp_path):
  with pytest.raises(base.ManualDataError) as error:
    build(vindr_mammo.VindrMammo, tmp_path / "tfds", tmp_path / "nowhere")
  message = str(error.value)
  assert "does not exist" in message and "breast-level_annotations.csv" in message
  assert "images/*/*.dicom" in message and "physionet.org/content/vindr-mammo" in message
  assert str(tmp_path / "nowhere") in message


def test_vindr_mammo_malformed_birads_names_file_and_line(tmp_path):
  manual = write_vindr_mammo(tmp_path / "manual")
  lines = (manual / "breast-level_annotations.csv").read_text().splitlines()
  lines[3] = lines[3].replace("BI-RADS 5", "BI-RADS 7")
  (manual / "breast-level_annotations.csv").write_text("\n".join(lines) + "\n")
  with pytest.raises(base.MalformedRecordError,
                     match=r"breast-level_annotations\.csv:4 \(9e1cf4d51d0b9c1a8b1b4d9e4a0e8f77\).*BI-RADS 7"):
    build(vindr_mammo.VindrMammo, tmp_path / "tfds", manual)


# CBIS-DDSM ------------------------------------------------------------------------------------
MASS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
                "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]
CALC_COLUMNS = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
                "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]


def write_cbis_ddsm(root: Path, kind: str, cases: list[tuple[str, str, str]], crop_size: int = 40,
                    full_size: tuple[int, int] = (160, 128)) -> Path:
  """`cases`: (split, pathology, how the crop's series is laid out: 'described' | 'swapped' | 'plain').

  The TCIA tree: CBIS-DDSM/<folder>/<date-DDSM-...>/<n.000000-description-xxxxx>/1-1.dcm, where a
  crop and its mask share one series; the CSVs name <folder>/<study UID>/<series UID>/00000x.dcm.
  """
  prefix = {"mass": "Mass", "calc": "Calc"}[kind]
  tree = root / "CBIS-DDSM"
  rows: dict[str, list] = {"train": [], "test": []}
  for k, (split, pathology, layout) in enumerate(cases):
    folder = f"{prefix}-{'Training' if split == 'train' else 'Test'}_P_{k:05d}_{'LEFT' if k % 2 else 'RIGHT'}_CC"
    full_study, full_series = generate_uid(), generate_uid()
    write_dicom(tree / folder / "07-20-2016-DDSM-NA-74994" / "1.000000-full mammogram images-24515" / "1-1.dcm",
                np.full(full_size, 900, np.uint16), study_uid=full_study, series_uid=full_series,
                description="full mammogram images")
    study, series = generate_uid(), generate_uid()
    series_dir = tree / f"{folder}_1" / "07-21-2016-DDSM-NA-09887" / "1.000000-ROI mask images-25005"
    # The crop is recognisable by its size and its left-bright content; the mask is full-size, binary.
    crop = (left_bright(crop_size, crop_size + 10, seed=k).astype(np.uint16) * 16)
    mask = np.zeros(full_size, np.uint16)
    mask[40:80, 30:70] = 4095
    crop_name, mask_name = ("1-2.dcm", "1-1.dcm") if layout == "swapped" else ("1-1.dcm", "1-2.dcm")
    described = layout == "described"
    write_dicom(series_dir / crop_name, crop, study_uid=study, series_uid=series,
                description="cropped images" if described else None)
    write_dicom(series_dir / mask_name, mask, study_uid=study, series_uid=series,
                description="ROI mask images" if described else None)
    base_path = f"{folder}_1/{study}/{series}"
    row = [f"P_{k:05d}", "3", "LEFT" if k % 2 else "RIGHT", "CC" if k % 3 else "MLO", "1",
           "mass" if kind == "mass" else "calcification", "OVAL", "CIRCUMSCRIBED", "4", pathology, "4",
           f"{folder}/{full_study}/{full_series}/000000.dcm",
           f"{base_path}/000000.dcm" + ("\n" if k == 0 else ""),  # some CSV paths end in a newline
           f"{base_path}/000001.dcm"]
    rows[split].append(row)
  for split, split_rows in rows.items():
    write_csv(root / f"{kind}_case_description_{split}_set.csv",
              MASS_COLUMNS if kind == "mass" else CALC_COLUMNS, split_rows)
  return root


MASS_CASES = [("train", "BENIGN", "swapped"), ("train", "MALIGNANT", "plain"),
              ("train", "BENIGN_WITHOUT_CALLBACK", "described"), ("test", "MALIGNANT", "swapped"),
              ("test", "BENIGN", "described")]


def test_cbis_ddsm_mass_matches_crops_on_uids(tmp_path):
  manual = write_cbis_ddsm(tmp_path / "manual", "mass", MASS_CASES)
  builder = build(cbis_ddsm.CbisDdsmMass, tmp_path / "tfds", manual)
  train, test = records(builder, "train"), records(builder, "test")
  assert {k: int(r["label"]) for k, r in train.items()} == {
      "Mass-Training_P_00000_RIGHT_CC_1": 0, "Mass-Training_P_00001_LEFT_CC_1": 2,
      "Mass-Training_P_00002_RIGHT_CC_1": 1}
  assert {k: int(r["label"]) for k, r in test.items()} == {
      "Mass-Test_P_00003_LEFT_CC_1": 2, "Mass-Test_P_00004_RIGHT_CC_1": 0}
  for record in list(train.values()) + list(test.values()):
    image = np.asarray(record["image"])
    assert image.shape == (40, 50, 3)  # the crop, never the full-size mask or mammogram
    assert_left_bright(image)
  assert text(train["Mass-Training_P_00000_RIGHT_CC_1"]["view"]) == "MLO"
  assert text(test["Mass-Test_P_00003_LEFT_CC_1"]["laterality"]) == "LEFT"

  source = pipeline.TaskSource(tasks.get("cbis_ddsm_mass"), "test", str(tmp_path / "tfds"))
  example = next(source[i] for i in range(len(source)) if source[i]["id"] == "Mass-Test_P_00003_LEFT_CC_1")
  # 0-shot [Med-PaLM M Table A.9], which shows no instruction; ours begins with one, as every
  # prompt of the paper does.
  assert example["prompt"] == (
      "Instructions: You are a helpful medical assistant. The following are questions about mammography "
      "reading. Given mammogram image <img>. Image view: MLO Q: Which of the following is the most likely type "
      "of the patient's breast mass? (A) BENIGN (B) BENIGN_WITHOUT_CALLBACK (C) MALIGNANT A:")
  assert (example["target"], example["label"]) == ("MALIGNANT.", 2)


def test_cbis_ddsm_calc_builds_from_its_own_csvs(tmp_path):
  manual = write_cbis_ddsm(tmp_path / "manual", "calc",
                           [("train", "BENIGN", "plain"), ("test", "BENIGN_WITHOUT_CALLBACK", "swapped")])
  builder = build(cbis_ddsm.CbisDdsmCalc, tmp_path / "tfds", manual)
  assert {k: int(r["label"]) for k, r in records(builder, "test").items()} == {"Calc-Test_P_00001_LEFT_CC_1": 1}
  record = pipeline._decode(records(builder, "train")["Calc-Training_P_00000_RIGHT_CC_1"])
  example = tasks.get("cbis_ddsm_calc").formatter(record, [])
  assert "most likely type of the patient's breast calcification? (A) BENIGN" in example["prompt"]
  assert example["target"] == "BENIGN."


def test_cbis_ddsm_missing_crops_are_listed(tmp_path):
  manual = write_cbis_ddsm(tmp_path / "manual", "mass", MASS_CASES)
  for path in (manual / "CBIS-DDSM" / "Mass-Test_P_00004_RIGHT_CC_1").rglob("*.dcm"):
    path.unlink()
  with pytest.raises(base.ManualDataError) as error:
    build(cbis_ddsm.CbisDdsmMass, tmp_path / "tfds", manual)
  assert "1 of 2 files" in str(error.value) and "Mass-Test_P_00004_RIGHT_CC_1" in str(error.value)
  assert "mass_case_description_test_set.csv:3" in str(error.value)
