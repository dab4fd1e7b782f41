"""glibc's allocator told to keep the memory it has, set before an entry point does anything else.

XLA:CPU frees and reallocates a step's temporaries every step (790 MiB for the tiny default).
glibc hands buffers that large to mmap, or to per-thread arenas that shrink with madvise, so every
step the kernel zeroed and faulted the same memory in again: ~200k page faults and a fifth of the
step's CPU time in the kernel. With one arena, no mmap and no trimming, the freed memory is reused
as it is: 0 page faults and ~0.01 s of kernel time a step (the earlier fix, transparent huge pages,
left ~1k faults and, once the matmuls ran on bfloat16 operands, 0.3-0.9 s kernel stalls every few
steps; benchmarks/RESULTS.md). The price is that the process keeps its peak heap until it exits,
which a training or evaluation run reaches again every step anyway. glibc reads its tunables only
when a process starts, and `mallopt` does not reach the per-thread arenas XLA's threads create, so
the entry point re-executes itself once with the tunables set; elsewhere (another libc) they are
ignored and nothing changes.
"""

import os
import sys

TUNABLES = "GLIBC_TUNABLES"
KEEP_MEMORY = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
               "glibc.malloc.trim_threshold=4294967295")
_OURS = ("glibc.malloc.arena_max", "glibc.malloc.mmap_max", "glibc.malloc.trim_threshold")


def restart_keeping_memory() -> None:
  """Replace this process by the same command with glibc's keep-memory tunables (once; the pid, and
  so signals sent to it, stay the same). Call before anything else runs. A user who sets any of
  these tunables keeps their own choice."""
  current = os.environ.get(TUNABLES, "")
  if not sys.platform.startswith("linux") or any(key in current for key in _OURS):
    return
  env = {**os.environ, TUNABLES: f"{current}:{KEEP_MEMORY}" if current else KEEP_MEMORY}
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
