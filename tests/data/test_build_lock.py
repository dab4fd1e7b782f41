"""Two processes building into one data_dir take turns (`build.build_lock`)."""

import os
import subprocess
import sys
import textwrap
import time

from medpalm_m.data import build


def test_a_second_builder_waits_until_the_first_is_done(tmp_path, capsys):
  data_dir = str(tmp_path / "tfds")
  held, released = tmp_path / "held", tmp_path / "released"
  first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import pathlib, time
      from medpalm_m.data import build
      with build.build_lock({data_dir!r}):
        pathlib.Path({str(held)!r}).touch()
        time.sleep(2)
        pathlib.Path({str(released)!r}).touch()
      """)])
  try:
    deadline = time.monotonic() + 120
    while not held.exists():
      assert first.poll() is None, "the first builder died before taking the lock"
      assert time.monotonic() < deadline
      time.sleep(0.05)
    with build.build_lock(data_dir):
      assert released.exists(), "entered while the other process was still building"
    assert "waiting for another process building datasets under" in capsys.readouterr().out
  finally:
    assert first.wait(timeout=120) == 0
  # Free again: a later build enters at once and says nothing.
  with build.build_lock(data_dir):
    pass
  assert capsys.readouterr().out == ""
  assert os.path.exists(os.path.join(data_dir, build.LOCK_FILE))
