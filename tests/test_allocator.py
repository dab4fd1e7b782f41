"""The entry points restart once with glibc's tunables for XLA:CPU (medpalm_m.allocator)."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOW = ("import os, sys; from medpalm_m import allocator; "
        "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'), flush=True); "
        "allocator.restart_with_tunables()")


def run_showing_env(tunables: str | None) -> list[str]:
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("GLIBC_TUNABLES", None)
  if tunables is not None:
    env["GLIBC_TUNABLES"] = tunables
  out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True,
                       timeout=60, check=True)
  return out.stdout.split("\n")[:-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc tunable")
def test_the_process_restarts_once_in_place_with_the_tunables_and_keeps_the_users():
  from medpalm_m import allocator
  ours = ":".join(f"{k}={v}" for k, v in allocator.SETTINGS.items())
  first, second = run_showing_env(None)
  assert first.split()[1] == "None" and second.split()[1] == ours
  assert first.split()[0] == second.split()[0]  # execve: the same pid, so signals still reach it
  # A tunable the user set keeps the user's value; the others are added.
  first, second = run_showing_env("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0")
  assert second.split()[1] == ("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0:glibc.malloc.mmap_max=0:"
                               "glibc.malloc.trim_threshold=4294967295")
  # All of them set by the user: no restart.
  assert len(run_showing_env(ours.replace("hugetlb=1", "hugetlb=0"))) == 1


@pytest.mark.parametrize("entry_point", ["train.py", "evaluate.py"])
def test_the_heavy_entry_points_restart_before_anything_else_runs(entry_point):
  with open(os.path.join(ROOT, "medpalm_m", entry_point)) as f:
    body = ast.parse(f.read()).body
  statements = [node for node in body if not (isinstance(node, ast.Expr)
                                             and isinstance(node.value, ast.Constant))]
  first_import, first_code = statements[0], statements[1]
  assert isinstance(first_import, ast.ImportFrom) and "allocator" in [a.name for a in first_import.names]
  assert isinstance(first_code, ast.If) and "restart_with_tunables" in ast.unparse(first_code)
