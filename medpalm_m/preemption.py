"""SIGTERM as a request to stop (preemption), recorded from the moment `listen()` is called.

The trainer polls `requested()` between steps and before its first one, saves what exists and
returns, so the process exits 0 wherever the signal lands: during imports, data preparation,
compilation or a step. Standard library only, so that an entry point can listen before it imports
anything heavy.
"""

from __future__ import annotations

import signal

_received: list[int] = []


def _record(signum, frame) -> None:
  del frame
  _received.append(signum)


def listen() -> None:
  """From now on SIGTERM is recorded instead of ending the process."""
  signal.signal(signal.SIGTERM, _record)


def requested() -> bool:
  return bool(_received)


def reset() -> None:
  """Forget a recorded request (a library caller that trains several times in one process)."""
  _received.clear()
