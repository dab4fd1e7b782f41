"""glibc's allocator with transparent huge pages, set before an entry point does anything else.

XLA:CPU allocates a step's temporaries as buffers above glibc's mmap threshold, so each step maps
fresh memory that the kernel faults in 4 KiB at a time: the tiny default's training step took
~200k page faults and a fifth of its CPU time in the kernel. Asking glibc (2.35 and newer) to
advise huge pages for what it maps, where the kernel allows THP on madvise, made that ~1k faults
and 17% less CPU per step (benchmarks/RESULTS.md). glibc reads its tunables only when a process
starts, and `mallopt` has no equivalent, so the entry point re-executes itself once with the
tunable set; elsewhere (another libc, THP off) the setting is ignored and nothing changes.
"""

import os
import sys

TUNABLES = "GLIBC_TUNABLES"
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def restart_with_huge_pages() -> None:
  """Replace this process by the same command with glibc's huge-page tunable (once; the pid, and
  so signals sent to it, stay the same). Call before anything else runs."""
  current = os.environ.get(TUNABLES, "")
  if not sys.platform.startswith("linux") or "glibc.malloc.hugetlb" in current:
    return
  env = {**os.environ, TUNABLES: f"{current}:{HUGE_PAGES}" if current else HUGE_PAGES}
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
