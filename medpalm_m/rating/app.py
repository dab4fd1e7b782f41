"""The rating web app: one server-rendered page per case, blinded, every answer saved at once.

A rater signs in (password or one-time link) and sees only their own assignments, as pages
1..M: the radiograph (zoom, window/level), the indication, and the case's reports labelled A, B,
C, ... in the order fixed for this rater and case when assignments were made. They rank the
reports (drag or select) and/or list each report's omissions and errors, then mark the case done.
Sources, case ids and other raters' answers never leave the server: pages and forms speak of
positions and letters only. Every form carries a CSRF token (Flask-WTF). Images come only from
the study file, by page number, so no path a client sends reaches the file system.

The access log names the route, never the path's values (a sign-in token is one) or any form
field (a note may quote a report).
"""

from __future__ import annotations

import datetime
import functools
import logging
import string
from typing import Callable

import flask
from flask_wtf import csrf as csrf_lib

from medpalm_m.rating import store as store_lib
from medpalm_m.rating import study as study_lib

LETTERS = string.ascii_uppercase
MAX_NOTE_CHARS = 2000
log = logging.getLogger("medpalm_m.rating")


def check_study(study: study_lib.Study, db_path: str) -> None:
  """The ratings database must have been assigned from this very study file."""
  with store_lib.Store(db_path) as store:
    expected, assigned_from = store.meta("study_sha256"), store.meta("study_path")
  if expected is None:
    raise store_lib.StoreError(f"{db_path}: no assignments yet (`python -m medpalm_m.rate assign "
                               f"--study={study.path} --db={db_path}`)")
  if study_lib.fingerprint(study.path) != expected:
    raise store_lib.StoreError(f"{study.path} is not the study {db_path} was assigned from "
                               f"({assigned_from}, or a changed copy of it)")


def create_app(study_path: str, db_path: str) -> flask.Flask:
  study = study_lib.Study(study_path)
  check_study(study, db_path)
  with store_lib.Store(db_path) as store:
    secret_key = store.meta("secret_key")
  app = flask.Flask(__name__)
  app.config.update(
      SECRET_KEY=secret_key, SESSION_COOKIE_NAME="medpalm_m_rating", SESSION_COOKIE_HTTPONLY=True,
      SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=datetime.timedelta(days=30),
      # A rater may keep a page open for hours; the token is still bound to their session.
      WTF_CSRF_TIME_LIMIT=None, MAX_CONTENT_LENGTH=64 * 1024)
  csrf_lib.CSRFProtect(app)
  app.jinja_env.globals.update(kind_labels=store_lib.KIND_LABELS, kinds=store_lib.KINDS)

  def store() -> store_lib.Store:
    if "store" not in flask.g:
      flask.g.store = store_lib.Store(db_path)
    return flask.g.store

  @app.teardown_appcontext
  def _close(_):
    opened = flask.g.pop("store", None)
    if opened is not None:
      opened.close()

  @app.before_request
  def _load_rater():
    rater_id = flask.session.get("rater_id")
    flask.g.rater = store().rater(rater_id) if rater_id is not None else None

  @app.after_request
  def _headers_and_log(response: flask.Response) -> flask.Response:
    response.headers.update({
        "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                                   "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})
    response.headers.setdefault("Cache-Control", "no-store")
    rule = flask.request.url_rule.rule if flask.request.url_rule is not None else "(no route)"
    log.info("%s %s %d", flask.request.method, rule, response.status_code)
    return response

  @app.errorhandler(csrf_lib.CSRFError)
  def _csrf_error(e):
    return _error_page(400, "This form was not accepted (its security token is missing or stale). "
                            "Reload the page and try again.")

  @app.errorhandler(404)
  def _not_found(e):
    return _error_page(404, "Not found.")

  def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
      if flask.g.rater is None:
        return flask.redirect(flask.url_for("login"))
      return view(*args, **kwargs)
    return wrapped

  def assigned(position: int) -> store_lib.Assigned:
    found = store().assignment(flask.g.rater.rater_id, position)
    if found is None:
      flask.abort(404)
    return found

  def progress() -> dict:
    cases = store().assignments(flask.g.rater.rater_id)
    return {"done": sum(a.completed for a in cases), "total": len(cases)}

  def next_open(after: int) -> int | None:
    cases = store().assignments(flask.g.rater.rater_id)
    open_ = [a.position for a in cases if not a.completed]
    later = [p for p in open_ if p > after]
    return (later or open_ or [None])[0]

  def saved(message: str, position: int, anchor: str):
    if flask.request.headers.get("X-Requested-With") == "fetch":
      return flask.jsonify(saved=True, message=message)
    flask.flash(message)
    return flask.redirect(flask.url_for("case", position=position, _anchor=anchor))

  def refused(message: str, position: int, anchor: str):
    if flask.request.headers.get("X-Requested-With") == "fetch":
      return flask.jsonify(saved=False, message=message), 400
    flask.flash(message, "error")
    return flask.redirect(flask.url_for("case", position=position, _anchor=anchor))

  # Signing in ---------------------------------------------------------------------------------
  def sign_in(rater: store_lib.Rater):
    flask.session.clear()  # a fresh session (and CSRF token) for every sign-in
    flask.session["rater_id"] = rater.rater_id
    flask.session.permanent = True
    return flask.redirect(flask.url_for("index"))

  @app.route("/login", methods=["GET", "POST"])
  def login():
    if flask.request.method == "GET":
      return flask.render_template("login.html")
    rater = store().authenticate(flask.request.form.get("name", ""), flask.request.form.get("password", ""))
    if rater is None:
      return flask.render_template("login.html", error="Wrong name or password."), 401
    return sign_in(rater)

  @app.route("/login/token/<token>", methods=["GET", "POST"])
  def login_token(token: str):
    # GET only asks: a link previewer that fetches the URL must not use up the token.
    if flask.request.method == "GET":
      name = store().token_rater(token)
      if name is None:
        return _error_page(404, "This sign-in link was used already or is not valid; ask for a new one.")
      return flask.render_template("token.html", name=name)
    rater = store().redeem_token(token)
    if rater is None:
      return _error_page(404, "This sign-in link was used already or is not valid; ask for a new one.")
    return sign_in(rater)

  @app.post("/logout")
  def logout():
    flask.session.clear()
    return flask.redirect(flask.url_for("login"))

  # Rating -------------------------------------------------------------------------------------
  @app.get("/")
  @login_required
  def index():
    first = next_open(0)
    if first is not None:
      return flask.redirect(flask.url_for("case", position=first))
    if flask.g.rater.is_admin and not store().assignments(flask.g.rater.rater_id):
      return flask.redirect(flask.url_for("admin"))
    return flask.render_template("finished.html", progress=progress())

  @app.get("/case/<int:position>")
  @login_required
  def case(position: int):
    a = assigned(position)
    shown = study.case(a.case_id)
    letter_of = {source: LETTERS[i] for i, source in enumerate(a.order)}
    ranks = store().ranking(flask.g.rater.rater_id, a.case_id)
    findings = {letter: [] for letter in letter_of.values()}
    for f in store().findings(flask.g.rater.rater_id, a.case_id):
      findings[letter_of[f.source]].append(
          {"id": f.finding_id, "kind": f.kind, "significant": f.significant, "note": f.note})
    # Saved ranks, or letter order until the rater ranks; either way a full 1..K ranking.
    shown_ranks = {letter_of[s]: r for s, r in ranks.items()} if ranks else \
        {letter: i + 1 for i, letter in enumerate(letter_of.values())}
    count = len(store().assignments(flask.g.rater.rater_id))
    return flask.render_template(
        "case.html", position=position, count=count, progress=progress(), assignment=a,
        view=shown.view, indication=shown.indication,
        reports=[(letter_of[s], shown.reports[s]) for s in a.order],
        ranking_saved=bool(ranks), ranks=shown_ranks,
        ranked_letters=sorted(shown_ranks, key=shown_ranks.get), findings=findings,
        previous=position - 1 if position > 1 else None, next=position + 1 if position < count else None)

  @app.get("/case/<int:position>/image")
  @login_required
  def image(position: int):
    png = study.image_png(assigned(position).case_id)
    if png is None:
      flask.abort(404)
    response = flask.Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response

  @app.post("/case/<int:position>/ranking")
  @login_required
  def ranking(position: int):
    a = assigned(position)
    if not a.ranking:
      flask.abort(404)
    letters = LETTERS[:len(a.order)]
    try:
      ranks = {letter: int(flask.request.form[f"rank_{letter}"]) for letter in letters}
    except (KeyError, ValueError):
      return refused("Give every report a rank.", position, "ranking")
    if sorted(ranks.values()) != list(range(1, len(letters) + 1)):
      return refused(f"Each rank from 1 to {len(letters)} must be used once.", position, "ranking")
    store().save_ranking(flask.g.rater.rater_id, a.case_id,
                         {source: ranks[LETTERS[i]] for i, source in enumerate(a.order)})
    return saved("Ranking saved.", position, "ranking")

  @app.post("/case/<int:position>/findings")
  @login_required
  def add_finding(position: int):
    a = assigned(position)
    if not a.annotation:
      flask.abort(404)
    form = flask.request.form
    letter, kind = form.get("letter", ""), form.get("kind", "")
    if len(letter) != 1 or letter not in LETTERS[:len(a.order)] or kind not in store_lib.KINDS:
      return refused("Choose a report and a kind of finding.", position, "reports")
    note = form.get("note", "").strip()
    if len(note) > MAX_NOTE_CHARS:
      return refused(f"A note has at most {MAX_NOTE_CHARS} characters.", position, f"report-{letter}")
    store().add_finding(flask.g.rater.rater_id, a.case_id, a.order[LETTERS.index(letter)], kind,
                        form.get("significant") == "yes", note)
    return saved(f"{store_lib.KIND_LABELS[kind]} added to report {letter}.", position, f"report-{letter}")

  @app.post("/case/<int:position>/findings/<int:finding_id>/delete")
  @login_required
  def delete_finding(position: int, finding_id: int):
    a = assigned(position)
    if not store().delete_finding(flask.g.rater.rater_id, a.case_id, finding_id):
      flask.abort(404)
    return saved("Removed.", position, "reports")

  @app.post("/case/<int:position>/done")
  @login_required
  def done(position: int):
    a = assigned(position)
    if a.ranking and not store().ranking(flask.g.rater.rater_id, a.case_id):
      return refused("Save a ranking of the reports first.", position, "ranking")
    store().complete(flask.g.rater.rater_id, a.case_id)
    following = next_open(position)
    if following is None:
      return flask.redirect(flask.url_for("index"))
    return flask.redirect(flask.url_for("case", position=following))

  # Admin --------------------------------------------------------------------------------------
  @app.get("/admin")
  @login_required
  def admin():
    if not flask.g.rater.is_admin:
      flask.abort(404)
    return flask.render_template("admin.html", rows=store().progress())

  return app


def _error_page(status: int, message: str):
  return flask.render_template("error.html", message=message, status=status), status


def serve(study_path: str, db_path: str, *, host: str = "127.0.0.1", port: int = 8000,
          threads: int = 4, announce: Callable[[str], None] = print) -> None:
  """Serves until interrupted (waitress; port 0 picks a free one and announces it).

  Plain HTTP: beyond localhost, put it behind an HTTPS proxy, or passwords and session cookies
  cross the network in the clear.
  """
  import waitress
  app = create_app(study_path, db_path)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
  try:
    server = waitress.create_server(app, host=host, port=port, threads=threads, ident="medpalm_m.rate")
  except OSError as e:
    raise OSError(f"cannot serve on {host}:{port}: {e.strerror or e}") from e
  announce(f"serving {study_path} on http://{host}:{server.effective_port}/ "
           f"(answers in {db_path}); Ctrl-C stops")
  try:
    server.run()
  except KeyboardInterrupt:
    pass
  finally:
    server.close()
