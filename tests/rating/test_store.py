"""Raters, assignments and answers in the ratings database."""

import collections

import pytest

from medpalm_m.rating import app as app_lib
from medpalm_m.rating import assignment, store as store_lib, study as study_lib

SOURCES = ("reference", "m12b", "m84b", "m562b")


def test_the_papers_plan_one_ranker_per_case_every_rater_annotates_every_case():
  raters, cases = ["r1", "r2", "r3", "r4"], [f"c{i}" for i in range(10)]
  made = assignment.make(raters, cases, SOURCES, assignment.Plan())
  rankers = collections.Counter(a.case_id for a in made if a.ranking)
  assert rankers == {c: 1 for c in cases}
  load = collections.Counter(a.rater for a in made if a.ranking)
  assert sorted(load.values()) == [2, 2, 3, 3]  # 10 cases over 4 raters, as even as it gets
  assert collections.Counter(a.case_id for a in made if a.annotation) == {c: 4 for c in cases}
  assert all(sorted(a.order) == sorted(SOURCES) for a in made)
  # The order is random per (rater, case): the reference is not always in the same place.
  assert len({a.order.index("reference") for a in made}) == len(SOURCES)
  assert made == assignment.make(raters, cases, SOURCES, assignment.Plan())  # and seeded


def test_overlap_sends_a_share_of_the_cases_to_every_ranker():
  raters, cases = ["r1", "r2", "r3"], [f"c{i}" for i in range(10)]
  made = assignment.make(raters, cases, SOURCES, assignment.Plan(overlap=0.2, annotation_raters_per_case=1))
  rankers = collections.Counter(a.case_id for a in made if a.ranking)
  assert sorted(rankers.values()) == [1] * 8 + [3] * 2
  assert collections.Counter(a.case_id for a in made if a.annotation) == {c: 1 for c in cases}
  with pytest.raises(ValueError, match="ranking_raters_per_case=4"):
    assignment.make(raters, cases, SOURCES, assignment.Plan(ranking_raters_per_case=4))
  with pytest.raises(ValueError, match="overlap"):
    assignment.make(raters, cases, SOURCES, assignment.Plan(overlap=1.5))


def test_accounts_hashed_passwords_and_one_time_tokens(tmp_path):
  db = str(tmp_path / "ratings.sqlite")
  store_lib.add_rater(db, "alice", password="correct horse")
  token = store_lib.add_rater(db, "bob", token=True)
  with pytest.raises(store_lib.StoreError, match="'alice' exists"):
    store_lib.add_rater(db, "alice", password="another one")
  with open(db, "rb") as f:
    assert b"correct horse" not in f.read()
  with store_lib.Store(db) as store:
    assert store.authenticate("alice", "correct horse").name == "alice"
    assert store.authenticate("alice", "wrong horse") is None
    assert store.authenticate("nobody", "correct horse") is None
    assert store.authenticate("bob", "") is None  # a token rater has no password
    assert store.token_rater(token) == "bob"  # looking does not use it up
    assert store.redeem_token(token).name == "bob"
    assert store.redeem_token(token) is None
  store_lib.add_rater(db, "alice", password="new password", reset=True)
  with store_lib.Store(db) as store:
    assert store.authenticate("alice", "correct horse") is None
    assert store.authenticate("alice", "new password") is not None


def test_every_answer_is_committed_when_it_is_given(tmp_path, study_file):
  db = str(tmp_path / "ratings.sqlite")
  store_lib.add_rater(db, "alice", password="alice password")
  assignment.assign(study_file, db, assignment.Plan())
  writer = store_lib.Store(db)
  rater = writer.authenticate("alice", "alice password")
  first = writer.assignments(rater.rater_id)[0]
  writer.save_ranking(rater.rater_id, first.case_id, {s: i + 1 for i, s in enumerate(first.order)})
  writer.add_finding(rater.rater_id, first.case_id, first.order[0], "omission", True, "misses the edema")
  # Another connection (another server process) sees both while the writer is still open.
  with store_lib.Store(db) as reader:
    assert reader.ranking(rater.rater_id, first.case_id) == {s: i + 1 for i, s in enumerate(first.order)}
    assert [f.note for f in reader.findings(rater.rater_id, first.case_id)] == ["misses the edema"]
    assert reader.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
  writer.close()
  with pytest.raises(store_lib.StoreError, match="has assignments already"):
    assignment.assign(study_file, db, assignment.Plan())


def test_the_server_refuses_a_study_the_database_was_not_assigned_from(tmp_path, study_file):
  db = str(tmp_path / "ratings.sqlite")
  store_lib.add_rater(db, "alice", password="alice password")
  with pytest.raises(store_lib.StoreError, match="no assignments yet"):
    app_lib.create_app(study_file, db)
  assignment.assign(study_file, db, assignment.Plan())
  copy = tmp_path / "changed.sqlite"
  copy.write_bytes(open(study_file, "rb").read() + b"\0")
  with pytest.raises(store_lib.StoreError, match="not the study"):
    app_lib.create_app(str(copy), db)
  with pytest.raises(study_lib.StudyError, match="not a study file"):
    app_lib.create_app(db, db)
