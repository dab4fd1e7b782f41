"""The study file: everything raters are shown, and the hidden source of every report.

One SQLite file, so it can be handed over whole and read without trusting it (no pickle, no
code): `meta` (format, task, split, seed, ...), `sources` (each report source's name and where
its reports came from), `cases` (indication, view and the image as PNG) and `reports` (one text
per case and source). Only the server reads `sources`/`reports.source`; a rater never sees them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import sqlite3
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

FORMAT = "medpalm_m.rating.study/1"
REFERENCE = "reference"  # the source name of the dataset's own report

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (name TEXT PRIMARY KEY, origin TEXT NOT NULL);
CREATE TABLE cases (
  case_id TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, study_id TEXT NOT NULL,
  view TEXT NOT NULL, indication TEXT NOT NULL, image_png BLOB NOT NULL);
CREATE TABLE reports (
  case_id TEXT NOT NULL REFERENCES cases(case_id), source TEXT NOT NULL REFERENCES sources(name),
  text TEXT NOT NULL, PRIMARY KEY (case_id, source));
"""


class StudyError(ValueError):
  """A study file that is missing, not a study, or inconsistent; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Case:
  case_id: str  # the dataset's example id (never shown to raters)
  study_id: str
  view: str
  indication: str
  image_png: bytes
  reports: Mapping[str, str]  # source name -> report text


def png_bytes(image: np.ndarray) -> bytes:
  """HxW, HxWx1 or HxWx3 uint8 -> PNG; grayscale when the channels agree (every radiograph)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"images must be uint8, got {image.dtype}")
  if image.ndim == 3 and (image.shape[2] == 1 or (image.shape[2] == 3 and
                                                   (image == image[..., :1]).all())):
    image = image[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def write(path: str, cases: Sequence[Case], origins: Mapping[str, str], meta: Mapping[str, Any]) -> None:
  """Writes a new study file (refusing to overwrite one: raters' answers may point at it)."""
  if os.path.exists(path):
    raise FileExistsError(f"{path} exists; a study file is never overwritten (choose another --out)")
  names = list(origins)
  for case in cases:
    if sorted(case.reports) != sorted(names):
      raise ValueError(f"case {case.case_id} has reports from {sorted(case.reports)}, not {sorted(names)}")
  tmp = path + ".tmp"
  if os.path.exists(tmp):
    os.remove(tmp)
  with sqlite3.connect(tmp) as db:
    db.executescript(_SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)",
                   [("format", FORMAT), *((k, json.dumps(v)) for k, v in meta.items())])
    db.executemany("INSERT INTO sources VALUES (?, ?)", list(origins.items()))
    for position, case in enumerate(cases):
      db.execute("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?)",
                 (case.case_id, position, case.study_id, case.view, case.indication, case.image_png))
      db.executemany("INSERT INTO reports VALUES (?, ?, ?)",
                     [(case.case_id, source, case.reports[source]) for source in names])
  db.close()
  os.replace(tmp, path)  # a half-written study never carries the final name


def fingerprint(path: str) -> str:
  """sha256 of the file: the ratings database remembers which study its answers are about."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ShownCase:
  """What a rater may see of a case: no ids, no sources."""
  view: str
  indication: str
  reports: Mapping[str, str]  # source -> text; the server maps sources to letters


class Study:
  """A study file opened read-only. Connections are opened per call, so any thread may use it."""

  def __init__(self, path: str):
    if not os.path.isfile(path):
      raise StudyError(f"{path}: no such study file (write one with `python -m medpalm_m.rate select`)")
    self.path = path
    self._uri = pathlib.Path(path).absolute().as_uri() + "?mode=ro"
    try:
      with self._connect() as db:
        found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError as e:
      raise StudyError(f"{path}: not a study file ({e})") from e
    if found is None or found[0] != FORMAT:
      raise StudyError(f"{path}: not a study file of format {FORMAT!r} (found {found and found[0]!r})")

  def _connect(self) -> sqlite3.Connection:
    return sqlite3.connect(self._uri, uri=True)

  def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
    db = self._connect()
    try:
      return db.execute(sql, args).fetchall()
    finally:
      db.close()

  def meta(self) -> dict[str, Any]:
    return {k: (v if k == "format" else json.loads(v)) for k, v in self._query("SELECT key, value FROM meta")}

  def sources(self) -> list[str]:
    """Report source names, the reference first."""
    names = [row[0] for row in self._query("SELECT name FROM sources ORDER BY name")]
    return sorted(names, key=lambda n: (n != REFERENCE, n))

  def case_ids(self) -> list[str]:
    return [row[0] for row in self._query("SELECT case_id FROM cases ORDER BY position")]

  def case(self, case_id: str) -> ShownCase:
    rows = self._query("SELECT view, indication FROM cases WHERE case_id = ?", (case_id,))
    if not rows:
      raise KeyError(case_id)
    reports = dict(self._query("SELECT source, text FROM reports WHERE case_id = ?", (case_id,)))
    return ShownCase(view=rows[0][0], indication=rows[0][1], reports=reports)

  def image_png(self, case_id: str) -> bytes | None:
    rows = self._query("SELECT image_png FROM cases WHERE case_id = ?", (case_id,))
    return bytes(rows[0][0]) if rows else None

  def report_texts(self) -> list[str]:
    """Every report's text (tests check that none of it reaches a log)."""
    return [row[0] for row in self._query("SELECT text FROM reports")]
