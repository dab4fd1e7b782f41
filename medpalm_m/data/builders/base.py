"""The base of every real MultiMedBench builder: a TFDS builder (array_record) over a manual download.

The real datasets need credentialed or click-through downloads, so nothing is fetched: the user
puts the files where the builder looks and runs it. A subclass states where the dataset is
obtained (`HOMEPAGE`, `OBTAIN`), which files must be in its manual directory
(`REQUIRED_FILES`), its `features()`, and `generate_splits(manual_dir)`. Using it:

    builder = medqa.Medqa(data_dir="~/tfds", manual_dir="~/downloads/MedQA")
    builder.download_and_prepare()

The manual directory is, in order: the `manual_dir` argument; `DownloadConfig(manual_dir=...)`
given to `download_and_prepare` (as with `tfds build --manual_dir`); else
`<data_dir>/downloads/manual/<builder name>/`. Before anything is read, every required file is
checked and all missing ones are listed in one `ManualDataError` with where to get them and
where to put them.

Malformed records: by default the first one stops the build with a `MalformedRecordError` that
names its file and line. With `skip_malformed=True` each malformed record is skipped, counted,
reported (stderr) when the build ends, and the count plus the first reasons are stored in the
prepared dataset's `metadata.json` (`malformed_skipped`, `malformed_examples`); they are also on
`builder.malformed_records`. A file that cannot be parsed at all (truncated JSON, missing CSV
columns, text that is not UTF-8) always stops the build: there is no record boundary to skip to.

Records the paper's selection leaves out (MIMIC-III findings over 600 tokens, ...) are not
malformed: `leave_out(split, reason)` counts them, and the counts are reported when the build ends
and stored in `metadata.json` (`left_out`).

Builder options: a subclass that takes keyword options (PrecisionFDA's `train_fraction`, Slake's
`english_only`) names them in `OPTIONS`; their values are stored in `metadata.json`
(`builder_options`), so a dataset prepared with other values is recognised (`build.prepare`).

Every refusal of a download is one of `REFUSALS`, and its message names the file (or folder).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import glob
import json
import os
import sys
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from medpalm_m.data import images
from medpalm_m.data.builders import safe_pickle

# A REQUIRED_FILES entry: a path relative to the manual directory (glob patterns allowed), or a
# tuple of such paths of which any one suffices (e.g. a pickled or a parquet distribution).
RequiredFile = str | tuple[str, ...]
KeyedRecord = tuple[str, dict[str, Any]]

# Parsing failures of one record that mean "this record is malformed", not "the code is wrong".
RECORD_ERRORS = (KeyError, ValueError, TypeError, IndexError, AttributeError)
_MAX_REASONS_KEPT = 100


# How a user asks to skip malformed records, from each command that builds.
SKIP_FLAGS = "--config.data.skip_malformed=True for medpalm_m.train / evaluate, --skip_malformed for medpalm_m.data build"


class ManualDataError(FileNotFoundError):
  """The manual directory is missing, incomplete, or yields no records for a split."""


class MalformedRecordError(ValueError):
  """One record of a source file cannot be read; names the file and line (or entry)."""

  def __init__(self, path: str | os.PathLike, line: int | None, reason: str, *, entry: str | None = None):
    self.path, self.line, self.reason, self.entry = str(path), line, reason, entry
    where = f"{self.path}:{line}" if line is not None else self.path
    if entry is not None:
      where += f" ({entry})"
    super().__init__(f"{where}: {reason}")


# What a build raises when it refuses a download; each message names the file or folder.
REFUSALS = (ManualDataError, MalformedRecordError, safe_pickle.UnsafePickleError, images.ImageError)


def option_hint(task: str, option: str, value: object) -> str:
  """How a user sets a builder option, from each command that builds."""
  return (f"--builder_option {task}.{option}={value} for medpalm_m.data build, "
          f"data.builder_options={{'{task}': {{'{option}': {value!r}}}}} in the config of "
          "medpalm_m.train / evaluate")


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder that reads a user's local download; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = ""
  CITATION = ""
  HOMEPAGE = ""  # where the dataset is described and obtained
  OBTAIN = ""  # how to get it: licence or credentialing, which archive, how to unpack it
  REQUIRED_FILES: tuple[RequiredFile, ...] = ()
  # Images are stored RGB with their longer side at most this many pixels (the model sees 224):
  # keeps the prepared data small without losing what the paper's resolution needs.
  IMAGE_MAX_SIDE = 512
  # Keyword options of the subclass's __init__: name -> what it selects (see the module docstring).
  OPTIONS: Mapping[str, str] = {}

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    # TFDS shows these instructions (`tfds build`, catalog); compose them from the same fields
    # that the missing-file error uses, so the two never disagree.
    if cls.HOMEPAGE or cls.OBTAIN or cls.REQUIRED_FILES:
      cls.MANUAL_DOWNLOAD_INSTRUCTIONS = cls.instructions()

  def __init__(self, *, manual_dir: str | os.PathLike | None = None, skip_malformed: bool = False,
               **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self._manual_dir_arg = os.path.expanduser(str(manual_dir)) if manual_dir is not None else None
    self._config_manual_dir: str | None = None
    self.skip_malformed = skip_malformed
    self.malformed_records: list[MalformedRecordError] = []
    self.left_out: collections.Counter[str] = collections.Counter()

  # Subclass interface -------------------------------------------------------------------------
  def features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  def generate_splits(self, manual_dir: str) -> Mapping[str, Iterable[KeyedRecord]]:
    """split name -> (unique key, record) pairs; lazily generated (records are read once)."""
    raise NotImplementedError

  def empty_split_hint(self, split: str) -> str:
    """What to check when `split` comes out with no records; a builder whose options select
    records (a sampled fraction) names them."""
    return f"check that the files are complete:\n{self.instructions()}"

  def option_values(self) -> dict[str, Any]:
    """The value of each of OPTIONS this builder was made with (the subclass keeps each as an
    attribute of the same name)."""
    return {name: getattr(self, name) for name in self.OPTIONS}

  def leave_out(self, split: str, reason: str) -> None:
    """Count a record the paper's selection leaves out of `split` (not a malformed one)."""
    self.left_out[f"{split}: {reason}"] += 1

  # Where the data is --------------------------------------------------------------------------
  @classmethod
  def instructions(cls) -> str:
    files = "\n".join(f"  {_describe(entry)}" for entry in cls.REQUIRED_FILES)
    return (f"Obtain it from {cls.HOMEPAGE or '(see the builder docstring)'}.\n{cls.OBTAIN}\n"
            f"The manual directory must contain:\n{files}")

  @property
  def manual_dir(self) -> str:
    if self._manual_dir_arg:
      return self._manual_dir_arg
    if self._config_manual_dir:
      return self._config_manual_dir
    return os.path.join(str(self.data_dir_root), "downloads", "manual", self.name)

  def missing_files(self, manual_dir: str) -> list[RequiredFile]:
    return [entry for entry in self.REQUIRED_FILES if not _present(manual_dir, entry)]

  def check_manual_dir(self, manual_dir: str | None = None) -> None:
    """Raise ManualDataError listing every missing required file, where to get and put them."""
    manual_dir = manual_dir or self.manual_dir
    if not os.path.isdir(manual_dir):
      missing, what = list(self.REQUIRED_FILES), "does not exist"
    else:
      missing, what = self.missing_files(manual_dir), "is incomplete"
    if not missing:
      return
    listing = "\n".join(f"  - {_describe(entry)}" for entry in missing)
    raise ManualDataError(
        f"{self.name}: the manual directory {manual_dir} {what}. Missing:\n{listing}\n"
        f"Obtain the dataset from {self.HOMEPAGE}. {self.OBTAIN}\n"
        f"Put the files under {manual_dir}/ with the layout above (or pass manual_dir=... / "
        f"DownloadConfig(manual_dir=...) pointing at the folder that holds them).")

  # Malformed records --------------------------------------------------------------------------
  def malformed(self, path: str | os.PathLike, line: int | None, reason: str, *,
                entry: str | None = None) -> None:
    """Stop the build (default), or count and skip the record (skip_malformed=True)."""
    error = MalformedRecordError(path, line, reason, entry=entry)
    if not self.skip_malformed:
      raise error
    self.malformed_records.append(error)

  @contextlib.contextmanager
  def record_at(self, path: str | os.PathLike, line: int | None, *, entry: str | None = None):
    """Parse one record inside this block; its parse errors become `malformed(...)`.

    After a skipped record the block's remaining statements do not run, so a `yield` at its end
    yields only records that parsed.
    """
    try:
      yield
    except MalformedRecordError:
      raise
    except RECORD_ERRORS as e:
      self.malformed(path, line, f"{type(e).__name__}: {e}", entry=entry)

  # Readers that know where each record starts -------------------------------------------------
  def jsonl_records(self, path: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) per non-blank line; a bad line is malformed."""
    with open(path, encoding="utf-8") as f:
      for line_number, line in _utf8_lines(path, f):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
        except json.JSONDecodeError as e:
          self.malformed(path, line_number, f"invalid JSON: {e.msg} (column {e.colno})")
          continue
        yield line_number, record

  @staticmethod
  def json_items(path: str) -> Iterator[tuple[int, str | int, Any]]:
    """(line number, key or index, value) of each item of a top-level JSON list or object."""
    text = read_text(path)
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    if index >= len(text) or text[index] not in "[{":
      raise MalformedRecordError(path, _line_of(text, index), "expected a JSON list or object")
    closing = "]" if text[index] == "[" else "}"
    is_object = closing == "}"
    index, position, line, counted = index + 1, 0, 1, 0
    while True:
      index = _skip_space(text, index)
      if index < len(text) and text[index] == closing:
        return
      if position and (index >= len(text) or text[index] != ","):
        raise MalformedRecordError(path, _line_of(text, index), "expected ',' between items")
      index = _skip_space(text, index + 1) if position else index
      line += text.count("\n", counted, index)
      counted = index
      try:
        if is_object:
          key, index = decoder.raw_decode(text, index)
          index = _skip_space(text, index)
          if index >= len(text) or text[index] != ":" or not isinstance(key, str):
            raise json.JSONDecodeError("expected a string key and ':'", text, index)
          value, index = decoder.raw_decode(text, _skip_space(text, index + 1))
        else:
          key, (value, index) = position, decoder.raw_decode(text, index)
      except json.JSONDecodeError as e:
        raise MalformedRecordError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e
      yield line, key, value
      position += 1

  def csv_rows(self, path: str, columns: Sequence[str] = (), **reader_args) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the row, row) of a CSV file with a header (gzip if it ends in .gz).

    A row with more or fewer fields than the header is malformed ("25 fields where 26 are
    expected"), named by its line.
    """
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
      reader = csv.DictReader(_utf8_lines_only(path, f), **reader_args)
      try:
        fieldnames = reader.fieldnames or ()
        missing = [c for c in columns if c not in fieldnames]
        if missing:
          raise MalformedRecordError(path, 1, f"missing columns {missing}; the header has {reader.fieldnames}")
        start = reader.line_num + 1
        for row in reader:
          # DictReader files surplus fields under the key None and fills absent ones with None.
          found = len(fieldnames) + len(row.pop(None, ())) - sum(v is None for v in row.values())
          if found != len(fieldnames):
            self.malformed(path, start, f"{found} fields where {len(fieldnames)} are expected")
          else:
            yield start, row
          start = reader.line_num + 1
      except csv.Error as e:
        raise MalformedRecordError(path, reader.line_num, f"not readable as CSV: {e}") from None

  def load_image(self, path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 (PNG, JPEG or DICOM via images.read_image), longer side <= IMAGE_MAX_SIDE."""
    image = images.read_image(path, max_side=self.IMAGE_MAX_SIDE)  # JPEG: decoded at reduced scale
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    height, width = image.shape[:2]
    scale = self.IMAGE_MAX_SIDE / max(height, width)
    if scale < 1:
      size = (max(1, round(width * scale)), max(1, round(height * scale)))
      image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return image

  @staticmethod
  def image_feature() -> tfds.features.Tensor:
    """HxWx3 uint8, zlib-encoded (at level 1: ~9x faster to build than TFDS's default level)."""
    from medpalm_m.data.builders import image_feature
    return image_feature.image()

  # TFDS plumbing ------------------------------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION, features=self.features(),
                                 homepage=self.HOMEPAGE, citation=self.CITATION,
                                 metadata=tfds.core.MetadataDict())

  def download_and_prepare(self, *, download_dir=None, download_config=None, file_format=None):
    if download_config is not None and download_config.manual_dir:
      self._config_manual_dir = os.path.expanduser(str(download_config.manual_dir))
    self.malformed_records = []
    self.left_out.clear()
    super().download_and_prepare(download_dir=download_dir, download_config=download_config,
                                 file_format=file_format)
    if self.left_out:
      counts = "\n".join(f"  {reason}: {n}" for reason, n in sorted(self.left_out.items()))
      print(f"{self.name}: left out by the paper's data selection:\n{counts}", file=sys.stderr, flush=True)
    if self.malformed_records:
      shown = "\n".join(f"  {e}" for e in self.malformed_records[:20])
      more = len(self.malformed_records) - 20
      print(f"{self.name}: skipped {len(self.malformed_records)} malformed records "
            f"(skip_malformed=True):\n{shown}" + (f"\n  ... and {more} more" if more > 0 else ""),
            file=sys.stderr, flush=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    manual_dir = self.manual_dir
    self.check_manual_dir(manual_dir)
    return {split: self._checked(split, records)
            for split, records in self.generate_splits(manual_dir).items()}

  def _generate_examples(self, **unused):
    raise NotImplementedError("ManualBuilder generates through generate_splits")

  def _checked(self, split: str, records: Iterable[KeyedRecord]) -> Iterator[KeyedRecord]:
    count = 0
    for key, record in records:
      count += 1
      yield key, record
    if count == 0:
      raise ManualDataError(f"{self.name}: split {split!r} has no records in {self.manual_dir} "
                            f"({len(self.malformed_records)} malformed records skipped); "
                            f"{self.empty_split_hint(split)}")
    # Written into metadata.json with the dataset, so the count outlives this process.
    self.info.metadata["malformed_skipped"] = len(self.malformed_records)
    self.info.metadata["malformed_examples"] = [str(e) for e in self.malformed_records[:_MAX_REASONS_KEPT]]
    self.info.metadata["left_out"] = dict(self.left_out)
    self.info.metadata["builder_options"] = self.option_values()


def read_text(path: str) -> str:
  """A whole UTF-8 file; text that is not UTF-8 is refused naming the file and its line."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise MalformedRecordError(path, data.count(b"\n", 0, e.start) + 1,
                               f"not UTF-8 text (byte {e.start}: {e.reason})") from None


def _utf8_lines(path: str, lines: Iterable[str]) -> Iterator[tuple[int, str]]:
  """(line number, line) of a text file opened as UTF-8; a byte that is not UTF-8 stops the build
  naming the file and line (a decoding error alone names neither)."""
  iterator, line_number = iter(lines), 0
  while True:
    try:
      line = next(iterator)
    except StopIteration:
      return
    except UnicodeDecodeError as e:
      # Decoded in blocks, so the bad byte is somewhere after the last line that was read.
      raise MalformedRecordError(path, None, f"not UTF-8 text after line {line_number} ({e.reason})") from None
    line_number += 1
    yield line_number, line


def _utf8_lines_only(path: str, lines: Iterable[str]) -> Iterator[str]:
  return (line for _, line in _utf8_lines(path, lines))


def _describe(entry: RequiredFile) -> str:
  return " or ".join(entry) if isinstance(entry, tuple) else entry


def _present(manual_dir: str, entry: RequiredFile) -> bool:
  alternatives = entry if isinstance(entry, tuple) else (entry,)
  for relative in alternatives:
    path = os.path.join(manual_dir, relative)
    if any(c in relative for c in "*?[") and glob.glob(path):
      return True
    if os.path.exists(path):
      return True
  return False


def _skip_space(text: str, index: int) -> int:
  while index < len(text) and text[index] in " \t\r\n":
    index += 1
  return index


def _line_of(text: str, index: int) -> int:
  return text.count("\n", 0, index) + 1
