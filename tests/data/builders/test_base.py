"""The manual-download builder base: where data is looked for, what a missing or malformed input says."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from medpalm_m.data.builders import base, medqa, path_vqa, slake


class Notes(base.ManualBuilder, skip_registration=True):
  """A small real subclass: one JSON-lines file per split, one required image folder."""

  HOMEPAGE = "https://example.org/notes"
  OBTAIN = "Sign the data use agreement, then download notes.zip."
  REQUIRED_FILES = ("train.jsonl", "test.jsonl", ("labels.csv", "labels.csv.gz"), "imgs/*.png")

  def features(self):
    return tfds.features.FeaturesDict({"id": tfds.features.Text(), "value": np.int64})

  def generate_splits(self, manual_dir):
    return {split: self._records(os.path.join(manual_dir, f"{split}.jsonl")) for split in ("train", "test")}

  def _records(self, path):
    for line, entry in self.jsonl_records(path):
      with self.record_at(path, line):
        yield str(line), {"id": str(entry["id"]), "value": int(entry["value"])}


def write_notes(folder, train_lines, test_lines=('{"id": "t", "value": 1}',)):
  os.makedirs(os.path.join(folder, "imgs"), exist_ok=True)
  for name, lines in (("train.jsonl", train_lines), ("test.jsonl", test_lines)):
    with open(os.path.join(folder, name), "w") as f:
      f.write("\n".join(lines) + "\n")
  open(os.path.join(folder, "labels.csv.gz"), "w").close()
  open(os.path.join(folder, "imgs", "a.png"), "w").close()


def test_missing_manual_dir_lists_every_file_and_where_to_get_and_put_them(tmp_path):
  with pytest.raises(base.ManualDataError) as error:
    medqa.Medqa(data_dir=str(tmp_path)).download_and_prepare()
  message = str(error.value)
  default_dir = os.path.join(str(tmp_path), "downloads", "manual", "medqa")
  assert isinstance(error.value, FileNotFoundError)
  assert f"manual directory {default_dir} does not exist" in message
  for split in ("train", "dev", "test"):
    assert f"questions/US/4_options/phrases_no_exclude_{split}.jsonl" in message
  assert "https://github.com/jind11/MedQA" in message and "data_clean.zip" in message
  assert f"Put the files under {default_dir}/" in message
  assert not os.path.exists(os.path.join(str(tmp_path), "medqa", "1.0.0", "dataset_info.json"))


def test_incomplete_manual_dir_lists_only_the_missing_files(tmp_path):
  write_notes(str(tmp_path / "notes"), ['{"id": "a", "value": 1}'])
  os.remove(tmp_path / "notes" / "test.jsonl")
  os.remove(tmp_path / "notes" / "imgs" / "a.png")
  with pytest.raises(base.ManualDataError) as error:
    Notes(data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "notes")).download_and_prepare()
  listed = [line[4:] for line in str(error.value).splitlines() if line.startswith("  - ")]
  assert listed == ["test.jsonl", "imgs/*.png"]
  assert "is incomplete" in str(error.value) and "https://example.org/notes" in str(error.value)


def test_alternatives_and_patterns_in_required_files(tmp_path):
  builder = path_vqa.PathVqa(data_dir=str(tmp_path / "tfds"))
  os.makedirs(tmp_path / "pvqa" / "data")
  open(tmp_path / "pvqa" / "data" / "train-00000-of-00002.parquet", "w").close()
  missing = builder.missing_files(str(tmp_path / "pvqa"))
  assert missing == [("qas/val/val_qa.pkl", "data/validation-*.parquet"), ("qas/test/test_qa.pkl", "data/test-*.parquet")]
  with pytest.raises(base.ManualDataError, match=r"- qas/test/test_qa.pkl or data/test-\*.parquet"):
    builder.check_manual_dir(str(tmp_path / "pvqa"))

  slake_dir = tmp_path / "Slake1.0"
  os.makedirs(slake_dir / "imgs" / "xmlab0")
  for name in ("train.json", "validate.json", "test.json"):
    (slake_dir / name).write_text("[]")
  assert slake.Slake(data_dir=str(tmp_path / "tfds")).missing_files(str(slake_dir)) == ["imgs/*/source.jpg"]
  (slake_dir / "imgs" / "xmlab0" / "source.jpg").write_bytes(b"")
  assert slake.Slake(data_dir=str(tmp_path / "tfds")).missing_files(str(slake_dir)) == []


def test_manual_download_instructions_come_from_the_same_fields():
  assert "https://example.org/notes" in Notes.MANUAL_DOWNLOAD_INSTRUCTIONS
  assert "labels.csv or labels.csv.gz" in Notes.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_download_config_manual_dir_is_used(tmp_path):
  write_notes(str(tmp_path / "given"), ['{"id": "a", "value": 3}'])
  builder = Notes(data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "given")))
  assert builder.manual_dir == str(tmp_path / "given")
  assert [int(r["value"]) for r in builder.as_data_source("train")] == [3]


def test_malformed_record_stops_by_default_and_is_skipped_and_counted_with_the_flag(tmp_path, capsys):
  lines = ['{"id": "a", "value": 1}', '', '{"id": "b", "value": "many"}', '{"id": "c", "value": 3',
           '{"id": "d", "value": 4}']
  write_notes(str(tmp_path / "notes"), lines)
  path = os.path.join(str(tmp_path / "notes"), "train.jsonl")
  with pytest.raises(base.MalformedRecordError) as error:
    Notes(data_dir=str(tmp_path / "stop"), manual_dir=str(tmp_path / "notes")).download_and_prepare()
  assert (error.value.path, error.value.line) == (path, 3)
  assert str(error.value).startswith(f"{path}:3: ValueError: invalid literal")
  assert not Notes(data_dir=str(tmp_path / "stop")).is_prepared()

  builder = Notes(data_dir=str(tmp_path / "skip"), manual_dir=str(tmp_path / "notes"), skip_malformed=True)
  builder.download_and_prepare()
  assert sorted(r["id"] for r in builder.as_data_source("train")) == [b"a", b"d"]
  assert [(e.path, e.line) for e in builder.malformed_records] == [(path, 3), (path, 4)]
  report = capsys.readouterr().err
  assert "notes: skipped 2 malformed records (skip_malformed=True)" in report
  assert f"{path}:4: invalid JSON" in report
  metadata = Notes(data_dir=str(tmp_path / "skip")).info.metadata  # stored with the dataset
  assert metadata["malformed_skipped"] == 2 and f"{path}:3" in metadata["malformed_examples"][0]


def test_a_split_left_empty_is_an_error(tmp_path):
  write_notes(str(tmp_path / "notes"), ['{"id": "a", "value": 1}'], test_lines=['{"id": "b"}'])
  with pytest.raises(base.ManualDataError, match=r"split 'test' has no records .* \(1 malformed records skipped\)"):
    Notes(data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "notes"),
          skip_malformed=True).download_and_prepare()


def test_json_items_give_each_items_line(tmp_path):
  path = tmp_path / "items.json"
  path.write_text('[\n  {"a": 1},\n  {"a": 2,\n   "b": [1,\n 2]},\n\n  "three"\n]\n')
  assert list(base.ManualBuilder.json_items(str(path))) == [(2, 0, {"a": 1}), (3, 1, {"a": 2, "b": [1, 2]}),
                                                            (7, 2, "three")]
  path.write_text(json.dumps({"111": {"q": 1}, "222": {"q": 2}}, indent=2))
  assert [(line, key) for line, key, _ in base.ManualBuilder.json_items(str(path))] == [(2, "111"), (5, "222")]
  path.write_text('[\n  {"a": 1},\n  {"a": 2\n  {"a": 3}\n]')
  with pytest.raises(base.MalformedRecordError, match=r"items.json:4: invalid JSON"):
    list(base.ManualBuilder.json_items(str(path)))


def test_csv_rows_give_each_rows_first_line_and_check_columns(tmp_path):
  path = tmp_path / "index.csv"
  path.write_text('id,text,label\n1,"two\nlines",a\n2,plain,b\n')
  notes = Notes(data_dir=str(tmp_path / "tfds"))
  assert list(notes.csv_rows(str(path), columns=("id", "label"))) == [
      (2, {"id": "1", "text": "two\nlines", "label": "a"}), (4, {"id": "2", "text": "plain", "label": "b"})]
  with pytest.raises(base.MalformedRecordError, match=r"index.csv:1: missing columns \['split'\]"):
    list(notes.csv_rows(str(path), columns=("id", "split")))


def test_a_csv_row_with_the_wrong_number_of_fields_says_so_with_its_line(tmp_path):
  path = tmp_path / "index.csv"
  path.write_text("id,text,label\n1,one,a\n2,two\n3,three,c,extra\n4,four,d\n")
  with pytest.raises(base.MalformedRecordError, match=r"index.csv:3: 2 fields where 3 are expected"):
    list(Notes(data_dir=str(tmp_path / "tfds")).csv_rows(str(path)))
  skipping = Notes(data_dir=str(tmp_path / "tfds"), skip_malformed=True)
  assert [row["id"] for _, row in skipping.csv_rows(str(path))] == ["1", "4"]
  assert [str(e) for e in skipping.malformed_records] == [
      f"{path}:3: 2 fields where 3 are expected", f"{path}:4: 4 fields where 3 are expected"]


def test_text_that_is_not_utf8_names_its_file(tmp_path):
  for name in ("items.json", "rows.csv", "lines.jsonl"):
    (tmp_path / name).write_bytes(b'[\n{"a": "caf\xe9"}\n]\n' if name.endswith(".json") else
                                  b'id\n' + b'"caf\xe9"\n')
  notes = Notes(data_dir=str(tmp_path / "tfds"))
  with pytest.raises(base.MalformedRecordError, match=r"items.json:2: not UTF-8 text"):
    list(notes.json_items(str(tmp_path / "items.json")))
  with pytest.raises(base.MalformedRecordError, match=r"rows.csv: not UTF-8 text after line"):
    list(notes.csv_rows(str(tmp_path / "rows.csv")))
  with pytest.raises(base.MalformedRecordError, match=r"lines.jsonl: not UTF-8 text after line"):
    list(notes.jsonl_records(str(tmp_path / "lines.jsonl")))
