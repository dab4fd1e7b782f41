"""glibc's allocator tuned for XLA:CPU, set before an entry point does anything else.

XLA:CPU allocates a step's temporaries as buffers above glibc's mmap threshold, so by default each
step maps fresh memory and returns it: the tiny default's training step took ~200k page faults and
a fifth of its CPU time in the kernel. Two settings fix that (benchmarks/RESULTS.md, issue 22):

- keep the memory: no mmap for large blocks, no trimming, one arena, so that after the first step
  every buffer is reused from the heap: 0 page faults a step;
- huge pages (where the kernel allows THP on madvise) for the heap that is kept: fewer TLB misses.

Huge pages alone (the earlier setting) still faulted ~2k huge pages a step; where another process
had fragmented memory, each fault compacted memory first and the bench-small step doubled (4.4 ->
8.1 s, 0.45 -> 6-8 s of kernel time a step) beside the torch peer. Keeping the memory makes the
step independent of that: 4.2 s either way.

glibc reads its tunables only when a process starts, and `mallopt` has no huge-page equivalent, so
the entry point re-executes itself once with the tunables set; elsewhere (another libc, THP off)
they are ignored and nothing changes. A tunable the user set keeps the user's value.
"""

import os
import sys

TUNABLES = "GLIBC_TUNABLES"
SETTINGS = {
    "glibc.malloc.hugetlb": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": "4294967295",
    "glibc.malloc.arena_max": "1",
}


def tunables(current: str = "") -> str:
  """`current` (a GLIBC_TUNABLES value) plus each of SETTINGS the user has not set."""
  user_keys = {item.split("=", 1)[0] for item in current.split(":") if item}
  missing = [f"{key}={value}" for key, value in SETTINGS.items() if key not in user_keys]
  return ":".join(([current] if current else []) + missing)


def restart_with_tunables() -> None:
  """Replace this process by the same command with SETTINGS in GLIBC_TUNABLES (once; the pid, and
  so signals sent to it, stay the same). Call before anything else runs."""
  current = os.environ.get(TUNABLES, "")
  wanted = tunables(current)
  if not sys.platform.startswith("linux") or wanted == current:
    return
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, TUNABLES: wanted})
