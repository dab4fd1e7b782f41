"""Run N cooperating JAX processes on this machine's CPU, as the hosts of a pod would run.

    python -m medpalm_m.launch_local --num_processes=2 --devices_per_process=2 -- \\
        -m medpalm_m.train --config=configs/tiny.py --workdir=DIR

Everything after `--` is the command line of each process's Python. Each process gets the
coordinator address, the process count and its own id in MEDPALM_M_COORDINATOR,
MEDPALM_M_NUM_PROCESSES and MEDPALM_M_PROCESS_ID (read by `medpalm_m.train`), and, on the CPU,
`devices_per_process` simulated devices; cross-process collectives go over gloo (TCP), JAX's
default CPU implementation. When one process fails, the others are stopped, since they would
otherwise wait for it in their next collective until the coordinator's timeout; the launcher
exits with the first failing process's status. A SIGTERM to the launcher goes to every process
(a preemption: they agree on a step, save it and exit 0).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict[str, str], *, coordinator: str, num_processes: int, process_id: int,
                devices_per_process: int) -> dict[str, str]:
  flags = [f for f in base.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  return dict(
      base, MEDPALM_M_COORDINATOR=coordinator, MEDPALM_M_NUM_PROCESSES=str(num_processes),
      MEDPALM_M_PROCESS_ID=str(process_id), JAX_PLATFORMS="cpu",
      # gloo is already JAX's default (jax 0.10); named so that an inherited "mpi" cannot break it.
      JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
      XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={devices_per_process}"]))


def launch(command: list[str], *, num_processes: int, devices_per_process: int = 1,
           port: int | None = None, python: str = sys.executable) -> int:
  """Start the processes, wait for all, and return 0 or the first nonzero exit status."""
  coordinator = f"127.0.0.1:{port or free_port()}"
  procs = [subprocess.Popen([python, *command], env=process_env(
      os.environ, coordinator=coordinator, num_processes=num_processes, process_id=i,
      devices_per_process=devices_per_process)) for i in range(num_processes)]

  def forward(signum, frame):  # a SIGTERM to the launcher is a preemption of every process
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)
  previous = signal.signal(signal.SIGTERM, forward)
  status = 0
  try:
    running = set(range(num_processes))
    while running:
      for i in sorted(running):
        code = procs[i].poll()
        if code is None:
          continue
        running.discard(i)
        if code and not status:
          status = code
          print(f"launch_local: process {i} exited with status {code}; stopping the others",
                file=sys.stderr, flush=True)
          for j in running:  # SIGKILL: a SIGTERM would start a checkpoint that needs process i
            procs[j].kill()
      time.sleep(0.1)
  finally:
    signal.signal(signal.SIGTERM, previous)
    for p in procs:
      if p.poll() is None:
        p.kill()
  return status


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  if "--" not in argv:
    raise SystemExit("usage: python -m medpalm_m.launch_local --num_processes=N "
                     "[--devices_per_process=D] -- -m medpalm_m.train ...")
  split = argv.index("--")
  parser = argparse.ArgumentParser(prog="python -m medpalm_m.launch_local")
  parser.add_argument("--num_processes", type=int, required=True)
  parser.add_argument("--devices_per_process", type=int, default=1,
                      help="simulated CPU devices per process")
  parser.add_argument("--port", type=int, default=None, help="coordinator port; default: a free one")
  args = parser.parse_args(argv[:split])
  sys.exit(launch(argv[split + 1:], num_processes=args.num_processes,
                  devices_per_process=args.devices_per_process, port=args.port))


if __name__ == "__main__":
  main()
