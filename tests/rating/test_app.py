"""The rating app's rules, through Flask's test client: blinding, access, CSRF, validation.
(tests/rating/test_browser.py runs the whole flow in a real browser against the real server.)"""

import re

import pytest

from medpalm_m.rating import app as app_lib
from medpalm_m.rating import assignment, store as store_lib, study as study_lib
from tests.rating import conftest

PASSWORDS = {"alice": "alice password", "bob": "bob password", "boss": "boss password"}


@pytest.fixture
def app(tmp_path, study_file):
  db = str(tmp_path / "ratings.sqlite")
  store_lib.add_rater(db, "alice", password=PASSWORDS["alice"])
  store_lib.add_rater(db, "bob", password=PASSWORDS["bob"])
  store_lib.add_rater(db, "boss", password=PASSWORDS["boss"], admin=True)
  assignment.assign(study_file, db, assignment.Plan(ranking_raters_per_case=2))
  app = app_lib.create_app(study_file, db)
  app.config["db"] = db
  return app


def _token(page: bytes) -> str:
  return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


def _sign_in(app, name):
  client = app.test_client()
  token = _token(client.get("/login").data)
  response = client.post("/login", data={"csrf_token": token, "name": name, "password": PASSWORDS[name]})
  assert response.status_code == 302
  return client


def _letters(page: bytes) -> list[str]:
  return re.findall(rb'<p class="report-text">([^<]*)</p>', page)


def test_a_rater_sees_letters_never_sources_ids_or_origins(app, study_file):
  study = study_lib.Study(study_file)
  secrets = [*study.sources(), *conftest.MODELS, "/runs/", *study.case_ids()]
  client = _sign_in(app, "alice")
  bodies = []
  for position in (1, 2, 3):
    page = client.get(f"/case/{position}")
    assert page.status_code == 200
    assert len(_letters(page.data)) == 4
    assert _letters(client.get(f"/case/{position}").data) == _letters(page.data)  # same order again
    bodies += [page.data, client.get(f"/case/{position}/image").data]
    token = _token(page.data)
    bodies.append(client.post(f"/case/{position}/ranking", headers={"X-Requested-With": "fetch"},
                              data={"csrf_token": token, **{f"rank_{x}": str(i + 1) for i, x in enumerate("ABCD")}}).data)
  bodies += [client.get(p).data for p in ("/", "/static/rate.js", "/static/rate.css", "/case/9")]
  texts = b"\n".join(bodies).lower()
  for secret in secrets:
    assert secret.lower().encode() not in texts, secret
  assert all(text.encode() in b"\n".join(bodies) for text in study.report_texts())  # the reports were shown


def test_answers_are_private_to_their_rater(app):
  alice = _sign_in(app, "alice")
  page = alice.get("/case/1").data
  alice.post("/case/1/findings", data={"csrf_token": _token(page), "letter": "B", "kind": "omission",
                                       "significant": "yes", "note": "alice-only note"})
  assert b"alice-only note" in alice.get("/case/1").data
  finding_id = re.search(rb'/case/1/findings/(\d+)/delete', alice.get("/case/1").data).group(1).decode()
  bob = _sign_in(app, "bob")
  bob_page = bob.get("/case/1").data
  assert b"alice-only note" not in bob_page
  # Bob cannot remove Alice's finding even with its id, nor see the admin page.
  assert bob.post(f"/case/1/findings/{finding_id}/delete", data={"csrf_token": _token(bob_page)}).status_code == 404
  assert b"alice-only note" in alice.get("/case/1").data
  assert bob.get("/admin").status_code == 404
  boss = _sign_in(app, "boss")
  admin = boss.get("/admin")
  assert admin.status_code == 200
  assert re.search(rb"<td>alice</td><td>0</td><td>3</td>", admin.data)
  assert b"alice-only note" not in admin.data


def test_forms_are_checked(app):
  client = _sign_in(app, "alice")
  token = _token(client.get("/case/1").data)
  # No CSRF token, or a wrong one: refused, nothing stored.
  assert client.post("/case/1/findings", data={"letter": "A", "kind": "omission", "note": "x"}).status_code == 400
  assert client.post("/case/1/findings", data={"csrf_token": "forged", "letter": "A", "kind": "omission"}).status_code == 400
  assert app.test_client().post("/login", data={"name": "alice", "password": PASSWORDS["alice"]}).status_code == 400
  # A ranking must use each rank once; a case needs a saved ranking before it is done.
  fetch = {"X-Requested-With": "fetch"}
  bad = client.post("/case/1/ranking", headers=fetch, data={"csrf_token": token, "rank_A": "1", "rank_B": "1",
                                                            "rank_C": "2", "rank_D": "3"})
  assert bad.status_code == 400 and not bad.json["saved"]
  client.post("/case/1/done", data={"csrf_token": token})
  assert b"0 of 3 done" in client.get("/case/1").data
  assert client.post("/case/1/findings", data={"csrf_token": token, "letter": "E", "kind": "omission"}).status_code == 302
  with store_lib.Store(app.config["db"]) as store:
    rater = store.authenticate("alice", PASSWORDS["alice"])
    case_id = store.assignments(rater.rater_id)[0].case_id
    assert store.ranking(rater.rater_id, case_id) == {} and store.findings(rater.rater_id, case_id) == []
  # Signed out, nothing but the sign-in page.
  assert app.test_client().get("/case/1").headers["Location"].endswith("/login")
  assert app.test_client().get("/case/1/image").status_code == 302


def test_one_time_link_asks_before_it_signs_in(app):
  token = store_lib.add_rater(app.config["db"], "carol", token=True)
  client = app.test_client()
  page = client.get(f"/login/token/{token}")  # a link previewer fetching it uses nothing up
  assert page.status_code == 200 and b"Sign in as carol" in page.data
  assert client.get(f"/login/token/{token}").status_code == 200
  assert client.post(f"/login/token/{token}", data={"csrf_token": _token(page.data)}).status_code == 302
  fresh = _token(client.get("/").data)  # signing in started a new session, with a new CSRF token
  assert client.post(f"/login/token/{token}", data={"csrf_token": fresh}).status_code == 404
  assert app.test_client().get(f"/login/token/{token}").status_code == 404
