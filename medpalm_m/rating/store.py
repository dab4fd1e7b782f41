"""The ratings database (SQLite): raters, their assignments and every answer they give.

Every write is its own committed transaction, in WAL mode with synchronous=FULL, so an answer
is on disk before the server replies: a killed server or browser loses nothing. The database
also keeps the report source of each case (copied from the study when assignments are made), so
`analysis` needs this file alone; the server never sends a source to a rater.

Passwords are stored as werkzeug scrypt hashes; one-time sign-in tokens as their sha256 (they
are random, so a fast hash is enough), cleared when used.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import secrets
import sqlite3
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from werkzeug import security

if TYPE_CHECKING:
  from medpalm_m.rating.assignment import Assignment

FORMAT = "medpalm_m.rating.ratings/1"
# The paper's error classes: omissions, clinical errors, and errors that are not clinical (such
# as a reference to a prior study the rater was not shown). Each is marked significant or not.
KINDS = ("omission", "clinical_error", "other_error")
KIND_LABELS = {"omission": "Omission", "clinical_error": "Clinical error",
               "other_error": "Non-clinical error (e.g. refers to a prior study)"}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE raters (
  rater_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT, token_hash TEXT UNIQUE,
  is_admin INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL);
CREATE TABLE report_sources (case_id TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (case_id, source));
CREATE TABLE assignments (
  rater_id INTEGER NOT NULL REFERENCES raters(rater_id), case_id TEXT NOT NULL,
  position INTEGER NOT NULL, ranking INTEGER NOT NULL, annotation INTEGER NOT NULL,
  report_order TEXT NOT NULL, completed TEXT,
  PRIMARY KEY (rater_id, case_id), UNIQUE (rater_id, position));
CREATE TABLE rankings (
  rater_id INTEGER NOT NULL, case_id TEXT NOT NULL, source TEXT NOT NULL, rank INTEGER NOT NULL,
  updated TEXT NOT NULL, PRIMARY KEY (rater_id, case_id, source),
  FOREIGN KEY (rater_id, case_id) REFERENCES assignments(rater_id, case_id));
CREATE TABLE findings (
  finding_id INTEGER PRIMARY KEY, rater_id INTEGER NOT NULL, case_id TEXT NOT NULL,
  source TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('omission', 'clinical_error', 'other_error')),
  significant INTEGER NOT NULL, note TEXT NOT NULL, created TEXT NOT NULL,
  FOREIGN KEY (rater_id, case_id) REFERENCES assignments(rater_id, case_id));
"""
# Checked against when a name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = security.generate_password_hash("not a password")


class StoreError(ValueError):
  """A ratings database that is missing, not one, or used the wrong way; the message says which."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _token_hash(token: str) -> str:
  return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Rater:
  rater_id: int
  name: str
  is_admin: bool


@dataclasses.dataclass(frozen=True)
class Assigned:
  """One case of a rater's list, as the server needs it."""
  position: int  # 1-based, the page number the rater sees
  case_id: str
  ranking: bool
  annotation: bool
  order: tuple[str, ...]  # sources in the order shown (A, B, ...)
  completed: bool


@dataclasses.dataclass(frozen=True)
class Finding:
  finding_id: int
  source: str
  kind: str
  significant: bool
  note: str


class Store:
  """One connection to the ratings database; open one per request or command, then close it."""

  def __init__(self, path: str, *, create: bool = False):
    if not create and not os.path.isfile(path):
      raise StoreError(f"{path}: no ratings database (add a rater first: "
                       "`python -m medpalm_m.rate add-rater --db=...`)")
    self.path = path
    new = not os.path.exists(path)
    try:
      self.db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
      self.db.execute("PRAGMA journal_mode=WAL")
      self.db.execute("PRAGMA synchronous=FULL")
      self.db.execute("PRAGMA foreign_keys=ON")
      if new:
        with self._transaction():
          for statement in _SCHEMA.split(";"):
            if statement.strip():
              self.db.execute(statement)
          self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
              ("format", FORMAT),
              # Flask signs sessions and CSRF tokens with it; kept here so they survive a restart.
              ("secret_key", secrets.token_hex(32))])
      found = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError as e:
      raise StoreError(f"{path}: not a ratings database ({e})") from e
    if found is None or found[0] != FORMAT:
      raise StoreError(f"{path}: not a ratings database of format {FORMAT!r}")

  def close(self) -> None:
    self.db.close()

  def __enter__(self) -> "Store":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _transaction(self):
    return _Transaction(self.db)

  def meta(self, key: str) -> str | None:
    row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None

  # Raters -------------------------------------------------------------------------------------
  def add_rater(self, name: str, *, password: str | None = None, token: bool = False,
                admin: bool = False, reset: bool = False) -> str | None:
    """Adds a rater (or, with reset, replaces their credentials); returns the one-time token."""
    if not name or len(name) > 64 or not name.isprintable():
      raise StoreError(f"rater name {name!r}: 1-64 printable characters")
    if (password is None) == (not token):
      raise StoreError("give a rater either a password or a one-time sign-in token")
    if password is not None and len(password) < 8:
      raise StoreError("a password needs at least 8 characters")
    new_token = secrets.token_urlsafe(24) if token else None
    password_hash = security.generate_password_hash(password) if password is not None else None
    token_hash = _token_hash(new_token) if new_token else None
    with self._transaction():
      exists = self.db.execute("SELECT 1 FROM raters WHERE name = ?", (name,)).fetchone()
      if exists and not reset:
        raise StoreError(f"{self.path}: rater {name!r} exists (--reset gives them new credentials)")
      if exists:
        self.db.execute("UPDATE raters SET password_hash = ?, token_hash = ?, is_admin = ? WHERE name = ?",
                        (password_hash, token_hash, int(admin), name))
      else:
        self.db.execute("INSERT INTO raters (name, password_hash, token_hash, is_admin, created) "
                        "VALUES (?, ?, ?, ?, ?)", (name, password_hash, token_hash, int(admin), _now()))
    return new_token

  def authenticate(self, name: str, password: str) -> Rater | None:
    row = self.db.execute("SELECT rater_id, name, is_admin, password_hash FROM raters WHERE name = ?",
                          (name,)).fetchone()
    stored = row[3] if row and row[3] else _DUMMY_HASH
    if not security.check_password_hash(stored, password) or not (row and row[3]):
      return None
    return Rater(row[0], row[1], bool(row[2]))

  def redeem_token(self, token: str) -> Rater | None:
    """Signs in with a one-time token, which stops working here and now."""
    with self._transaction():
      row = self.db.execute("SELECT rater_id, name, is_admin FROM raters WHERE token_hash = ?",
                            (_token_hash(token),)).fetchone()
      if row is None:
        return None
      self.db.execute("UPDATE raters SET token_hash = NULL WHERE rater_id = ?", (row[0],))
    return Rater(row[0], row[1], bool(row[2]))

  def token_rater(self, token: str) -> str | None:
    """The name a token would sign in as, without using it."""
    row = self.db.execute("SELECT name FROM raters WHERE token_hash = ?", (_token_hash(token),)).fetchone()
    return row[0] if row else None

  def rater(self, rater_id: int) -> Rater | None:
    row = self.db.execute("SELECT rater_id, name, is_admin FROM raters WHERE rater_id = ?",
                          (rater_id,)).fetchone()
    return Rater(row[0], row[1], bool(row[2])) if row else None

  def rater_names(self, *, admins: bool = False) -> list[str]:
    rows = self.db.execute("SELECT name FROM raters WHERE is_admin = ? ORDER BY rater_id", (int(admins),))
    return [r[0] for r in rows]

  # Assignments --------------------------------------------------------------------------------
  def assign(self, study_fingerprint: str, study_path: str, case_sources: Mapping[str, Sequence[str]],
             assignments: Iterable["Assignment"]) -> int:
    """Ties the database to one study and stores the assignments, all at once or not at all."""
    assignments = list(assignments)
    if not assignments:
      raise StoreError("the plan gives nobody anything to do")
    with self._transaction():
      if self.db.execute("SELECT 1 FROM assignments LIMIT 1").fetchone():
        raise StoreError(f"{self.path} has assignments already; make a new ratings database for a new plan")
      ids = dict(self.db.execute("SELECT name, rater_id FROM raters"))
      self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                          [("study_sha256", study_fingerprint), ("study_path", os.path.abspath(study_path))])
      self.db.executemany("INSERT INTO report_sources VALUES (?, ?)",
                          [(c, s) for c, sources in case_sources.items() for s in sources])
      positions: dict[str, int] = {}
      for a in assignments:
        positions[a.rater] = positions.get(a.rater, 0) + 1
        self.db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        (ids[a.rater], a.case_id, positions[a.rater], int(a.ranking), int(a.annotation),
                         json.dumps(a.order)))
    return len(assignments)

  def assignments(self, rater_id: int) -> list[Assigned]:
    rows = self.db.execute("SELECT position, case_id, ranking, annotation, report_order, completed "
                           "FROM assignments WHERE rater_id = ? ORDER BY position", (rater_id,))
    return [Assigned(r[0], r[1], bool(r[2]), bool(r[3]), tuple(json.loads(r[4])), r[5] is not None)
            for r in rows]

  def assignment(self, rater_id: int, position: int) -> Assigned | None:
    found = [a for a in self.assignments(rater_id) if a.position == position]
    return found[0] if found else None

  # Answers ------------------------------------------------------------------------------------
  def save_ranking(self, rater_id: int, case_id: str, ranks: Mapping[str, int]) -> None:
    with self._transaction():
      now = _now()
      self.db.executemany("INSERT OR REPLACE INTO rankings VALUES (?, ?, ?, ?, ?)",
                          [(rater_id, case_id, source, rank, now) for source, rank in ranks.items()])

  def ranking(self, rater_id: int, case_id: str) -> dict[str, int]:
    return dict(self.db.execute("SELECT source, rank FROM rankings WHERE rater_id = ? AND case_id = ?",
                                (rater_id, case_id)))

  def add_finding(self, rater_id: int, case_id: str, source: str, kind: str, significant: bool,
                  note: str) -> int:
    if kind not in KINDS:
      raise StoreError(f"kind {kind!r} is not one of {KINDS}")
    with self._transaction():
      cursor = self.db.execute(
          "INSERT INTO findings (rater_id, case_id, source, kind, significant, note, created) "
          "VALUES (?, ?, ?, ?, ?, ?, ?)", (rater_id, case_id, source, kind, int(significant), note, _now()))
    return int(cursor.lastrowid)

  def delete_finding(self, rater_id: int, case_id: str, finding_id: int) -> bool:
    """Deletes one of this rater's findings on this case; False when there is no such finding."""
    with self._transaction():
      cursor = self.db.execute("DELETE FROM findings WHERE finding_id = ? AND rater_id = ? AND case_id = ?",
                               (finding_id, rater_id, case_id))
    return cursor.rowcount == 1

  def findings(self, rater_id: int, case_id: str) -> list[Finding]:
    rows = self.db.execute("SELECT finding_id, source, kind, significant, note FROM findings "
                           "WHERE rater_id = ? AND case_id = ? ORDER BY finding_id", (rater_id, case_id))
    return [Finding(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

  def complete(self, rater_id: int, case_id: str) -> None:
    with self._transaction():
      self.db.execute("UPDATE assignments SET completed = COALESCE(completed, ?) "
                      "WHERE rater_id = ? AND case_id = ?", (_now(), rater_id, case_id))

  # Reading it all back ------------------------------------------------------------------------
  def progress(self) -> list[dict]:
    """Per rater: cases assigned, cases done, and how many of them rank and annotate."""
    rows = self.db.execute(
        "SELECT r.name, COUNT(a.case_id), COUNT(a.completed), COALESCE(SUM(a.ranking), 0), "
        "COALESCE(SUM(a.annotation), 0) FROM raters r LEFT JOIN assignments a USING (rater_id) "
        "WHERE r.is_admin = 0 GROUP BY r.rater_id ORDER BY r.rater_id")
    return [{"rater": r[0], "assigned": r[1], "done": r[2], "ranking": r[3], "annotation": r[4]}
            for r in rows]

  def completed_rankings(self) -> list[tuple[str, str, dict[str, int]]]:
    """(rater, case, {source: rank}) of every finished case with a ranking task."""
    rows = self.db.execute(
        "SELECT r.name, k.case_id, k.source, k.rank FROM rankings k JOIN raters r USING (rater_id) "
        "JOIN assignments a USING (rater_id, case_id) WHERE a.ranking = 1 AND a.completed IS NOT NULL "
        "ORDER BY r.rater_id, a.position")
    out: dict[tuple[str, str], dict[str, int]] = {}
    for rater, case_id, source, rank in rows:
      out.setdefault((rater, case_id), {})[source] = rank
    return [(rater, case_id, ranks) for (rater, case_id), ranks in out.items()]

  def completed_annotations(self) -> list[tuple[str, str, str, dict[str, int]]]:
    """(rater, case, source, counts) for every report of every finished annotation task, zero
    counts included; counts has `<kind>` and `<kind>_significant` for each of KINDS."""
    done = self.db.execute(
        "SELECT r.name, r.rater_id, a.case_id, a.report_order FROM assignments a JOIN raters r "
        "USING (rater_id) WHERE a.annotation = 1 AND a.completed IS NOT NULL ORDER BY r.rater_id, a.position")
    out = []
    for rater, rater_id, case_id, order in done.fetchall():
      for source in sorted(json.loads(order)):
        counts = {}
        for kind in KINDS:
          total, significant = self.db.execute(
              "SELECT COUNT(*), COALESCE(SUM(significant), 0) FROM findings WHERE rater_id = ? AND "
              "case_id = ? AND source = ? AND kind = ?", (rater_id, case_id, source, kind)).fetchone()
          counts[kind], counts[f"{kind}_significant"] = int(total), int(significant)
        out.append((rater, case_id, source, counts))
    return out

  def sources(self) -> list[str]:
    return sorted({r[0] for r in self.db.execute("SELECT DISTINCT source FROM report_sources")})


def add_rater(db_path: str, name: str, *, password: str | None = None, token: bool = False,
              admin: bool = False, reset: bool = False) -> str | None:
  """Adds a rater to the database (created if new); returns their one-time token if asked for."""
  with Store(db_path, create=True) as store:
    return store.add_rater(name, password=password, token=token, admin=admin, reset=reset)


def progress(db_path: str) -> list[dict]:
  with Store(db_path) as store:
    return store.progress()


class _Transaction:
  """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): one writer at a time, committed on exit."""

  def __init__(self, db: sqlite3.Connection):
    self.db = db

  def __enter__(self):
    self.db.execute("BEGIN IMMEDIATE")

  def __exit__(self, exc_type, *_):
    self.db.execute("ROLLBACK" if exc_type else "COMMIT")
