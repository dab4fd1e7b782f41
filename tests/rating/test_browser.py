"""The whole rating flow in a real browser (Debian's headless chromium, driven by Playwright)
against the real server (`python -m medpalm_m.rate serve`) on 127.0.0.1.

Set RATING_SCREENSHOT=path to keep the rating page's screenshot (docs/rating_page.png is one).
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from medpalm_m.rating import study as study_lib
from tests.rating import conftest

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-test.txt")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ALICE_PASSWORD = "alice's long password"
NOTES = ("NOTE-ONE misses the effusion", "NOTE-TWO omits cardiomegaly", "NOTE-THREE wrong side",
         "NOTE-FOUR before the crash")

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"no {CHROMIUM}: run tests/rating/install_chromium.sh (apt-get, as root)")


def _rate(*args: str, stdin: str = "") -> str:
  result = subprocess.run([sys.executable, "-m", "medpalm_m.rate", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  return result.stdout


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """`rate serve` as a subprocess on a fixed port, its output appended to one log file."""

  def __init__(self, study: str, db: str, log_path: str):
    self.args = [sys.executable, "-m", "medpalm_m.rate", "serve", f"--study={study}", f"--db={db}",
                 f"--port={_free_port()}"]
    self.port = int(self.args[-1].split("=")[1])
    self.url = f"http://127.0.0.1:{self.port}"
    self.log_path, self.process = log_path, None

  def start(self) -> None:
    with open(self.log_path, "a") as log:
      self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
      assert self.process.poll() is None, open(self.log_path).read()
      try:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
          return
      except OSError:
        time.sleep(0.05)
    raise TimeoutError(open(self.log_path).read())

  def kill(self) -> None:
    """SIGKILL: no chance to flush or clean up, like a crash."""
    self.process.send_signal(signal.SIGKILL)
    self.process.wait(timeout=10)

  def stop(self) -> None:
    if self.process and self.process.poll() is None:
      self.process.send_signal(signal.SIGINT)
      try:
        self.process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self.kill()


def _raw(server: Server, method: str, path: str, cookie: str = "", body: str = "") -> int:
  """One request exactly as written (no client-side normalisation of '..')."""
  connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
  headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
  connection.request(method, path, body=body, headers=headers)
  status = connection.getresponse().status
  connection.close()
  return status


class Recorder:
  """Every response a browser context receives, body included, passed on unchanged."""

  def __init__(self, context):
    self.bodies: list[tuple[str, bytes]] = []
    context.route("**/*", self._record)

  def _record(self, route) -> None:
    response = route.fetch(max_redirects=0)
    body = response.body()
    self.bodies.append((route.request.url, body))
    route.fulfill(response=response, body=body)


def _reports(page) -> list[str]:
  return page.locator(".report-text").all_inner_texts()


def _ready(page) -> None:
  """The page's script has run (it marks the canvas once the image is drawn): keys, drags and
  selects are handled from here on."""
  playwright_api.expect(page.locator("canvas[data-loaded=true]")).to_have_count(1)


def _add_finding(page, letter: str, kind: str, significant: bool, note: str) -> None:
  form = page.locator(f"#add-{letter}")
  form.locator("select[name=kind]").select_option(kind)
  if significant:
    form.locator("input[name=significant]").check()
  form.locator("input[name=note]").fill(note)
  form.locator("button[type=submit]").click()
  playwright_api.expect(page.locator(f"#findings-{letter}")).to_contain_text(note)


def test_rating_in_a_real_browser_against_the_real_server(tmp_path, study_file):
  expect = playwright_api.expect
  expect.set_options(timeout=10_000)
  db, log_path = str(tmp_path / "ratings.sqlite"), str(tmp_path / "server.log")
  _rate("add-rater", f"--db={db}", "--name=alice", stdin=ALICE_PASSWORD + "\n")
  printed = _rate("add-rater", f"--db={db}", "--name=bob", "--token")
  token = printed.split("one-time sign-in link: ")[1].strip().rsplit("/login/token/", 1)[1]
  _rate("assign", f"--study={study_file}", f"--db={db}", "--ranking_raters_per_case=2")  # both do all
  server = Server(study_file, db, log_path)
  server.start()
  link = f"{server.url}/login/token/{token}"
  study = study_lib.Study(study_file)
  started = time.monotonic()
  try:
    with playwright_api.sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
      alice_context = browser.new_context(viewport={"width": 1400, "height": 1000})
      alice_seen = Recorder(alice_context)
      page = alice_context.new_page()

      # Sign in: a wrong password is refused, the right one opens the first case.
      page.goto(f"{server.url}/login")
      page.fill("input[name=name]", "alice")
      page.fill("input[name=password]", "not the password")
      with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.click("#login button[type=submit]")
      assert refused.value.status == 401
      expect(page.locator(".flash.error")).to_have_text("Wrong name or password.")
      page.fill("input[name=name]", "alice")
      page.fill("input[name=password]", ALICE_PASSWORD)
      page.click("#login button[type=submit]")
      expect(page).to_have_url(f"{server.url}/case/1")
      expect(page.locator("#progress")).to_have_text("0 of 3 done")
      _ready(page)  # the image drew
      page.fill("#zoom", "2")  # zoom and window/level redraw without error
      page.fill("#window", "120")

      # Case 1: rank with the selects (D best), annotate A and C, done.
      order_1 = _reports(page)
      assert len(order_1) == 4
      page.select_option("select[name=rank_D]", "1")
      expect(page.locator("#ranking-status")).to_have_text("Saved.")
      expect(page.locator("#ranking-list li").first).to_have_attribute("data-letter", "D")
      _add_finding(page, "A", "clinical_error", True, NOTES[0])
      _add_finding(page, "C", "omission", False, NOTES[1])
      page.click("#done")
      expect(page).to_have_url(f"{server.url}/case/2")
      expect(page.locator("#progress")).to_have_text("1 of 3 done")
      _ready(page)

      # Case 2: rank by dragging C onto the top, annotate B, done.
      page.drag_and_drop("#ranking-list li[data-letter=C]", "#ranking-list li[data-letter=A]")
      expect(page.locator("#ranking-status")).to_have_text("Saved.")
      ranked_2 = [li.get_attribute("data-letter") for li in page.locator("#ranking-list li").all()]
      assert ranked_2[0] == "C" and sorted(ranked_2) == ["A", "B", "C", "D"]
      _add_finding(page, "B", "other_error", False, NOTES[2])
      page.click("#done")
      expect(page).to_have_url(f"{server.url}/case/3")

      # Keyboard: p goes back, n forward.
      _ready(page)
      page.locator("body").press("p")
      expect(page).to_have_url(f"{server.url}/case/2")
      _ready(page)
      page.locator("body").press("n")
      expect(page).to_have_url(f"{server.url}/case/3")

      # Case 3: one finding given, then the server dies mid-study.
      _add_finding(page, "D", "clinical_error", True, NOTES[3])
      if os.environ.get("RATING_SCREENSHOT"):
        page.goto(f"{server.url}/case/1")
        page.screenshot(path=os.environ["RATING_SCREENSHOT"], full_page=True)
        page.goto(f"{server.url}/case/3")

      # Reload: every answer kept, the reports in the same order.
      page.goto(f"{server.url}/case/1")
      assert _reports(page) == order_1
      expect(page.locator("#findings-A")).to_contain_text(NOTES[0])
      expect(page.locator("#findings-A")).to_contain_text("clinically significant")
      expect(page.locator("#findings-C")).to_contain_text(NOTES[1])
      expect(page.locator("select[name=rank_D]")).to_have_value("1")
      expect(page.locator("#case-done")).to_be_visible()

      server.kill()
      server.start()
      page.goto(f"{server.url}/case/3")  # the session survives the restart: no sign-in
      expect(page.locator("#findings-D")).to_contain_text(NOTES[3])
      expect(page.locator("#progress")).to_have_text("2 of 3 done")
      page.goto(f"{server.url}/case/2")
      assert [li.get_attribute("data-letter") for li in page.locator("#ranking-list li").all()] == ranked_2
      expect(page.locator("#findings-B")).to_contain_text(NOTES[2])
      page.goto(f"{server.url}/case/1")
      assert _reports(page) == order_1

      # Security, with raw requests carrying Alice's session cookie.
      cookie = "; ".join(f"{c['name']}={c['value']}" for c in alice_context.cookies())
      assert _raw(server, "POST", "/case/1/findings", cookie, "letter=A&kind=omission&note=no-csrf") == 400
      for path in ("/case/1/image/../../../../etc/passwd", "/static/../../../../etc/passwd",
                   "/static/..%2f..%2fstore.py", "/static/%2e%2e/%2e%2e/rating/store.py",
                   "/case/99/image", "/case/..%2f..%2fetc%2fpasswd/image"):
        assert _raw(server, "GET", path, cookie) == 404, path
      assert _raw(server, "GET", "/case/1/image", cookie) == 200  # the same cookie does get images
      page.reload()
      assert "no-csrf" not in page.content()

      # A second rater, through the one-time link: none of Alice's answers.
      bob_context = browser.new_context()
      bob_seen = Recorder(bob_context)
      bob = bob_context.new_page()
      bob.goto(link)
      bob.click("#token-login button[type=submit]")
      expect(bob).to_have_url(f"{server.url}/case/1")
      expect(bob.locator("#progress")).to_have_text("0 of 3 done")
      for position in (1, 2, 3):
        bob.goto(f"{server.url}/case/{position}")
        expect(bob.locator("#ranking-status")).to_have_text("Not saved yet.")
        expect(bob.locator(".finding")).to_have_count(0)
        content = bob.content()
        assert not any(note in content for note in NOTES)
      assert bob_context.request.get(link).status == 404  # used once
      browser.close()
  finally:
    server.stop()
  elapsed = time.monotonic() - started

  # Blinding: nothing either rater received names a source, its origin or a case id.
  secrets = [*study.sources(), *conftest.MODELS, "/runs/", *study.case_ids()]
  for url, body in alice_seen.bodies + bob_seen.bodies:
    lowered = body.lower()
    for secret in secrets:
      assert secret.lower().encode() not in lowered, (url, secret)
  shown = b"".join(body for _, body in alice_seen.bodies)
  assert all(text.encode() in shown for text in study.report_texts())  # what was checked did show them

  # The log: requests were logged, but no report text, note or token.
  log = open(log_path).read()
  assert "POST /case/<int:position>/findings 302" in log and "GET /case/<int:position> 200" in log
  for text in [*study.report_texts(), *NOTES, ALICE_PASSWORD, token]:
    assert text not in log, text
  assert "alice: 2 of 3 done" in _rate("progress", f"--db={db}")
  print(f"browser flow: {elapsed:.1f}s")
