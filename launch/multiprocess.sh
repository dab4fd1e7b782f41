#!/usr/bin/env bash
# N cooperating training processes on this machine's CPU, D simulated devices each, joined by
# jax.distributed over gloo: the multi-host code path (per-process data, cross-process
# collectives and checkpoints, metrics from process 0) without a cluster.
#   launch/multiprocess.sh N D CONFIG WORKDIR [--config.key=value ...]
# e.g. launch/multiprocess.sh 2 2 configs/tiny.py workdirs/tiny_2x2 --config.mesh.data=2 --config.mesh.fsdp=2
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: launch/multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS CONFIG WORKDIR [--config.key=value ...]"
num_processes=${1:?$usage}
devices=${2:?$usage}
config=${3:?$usage}
workdir=${4:?$usage}
shift 4
exec "${PYTHON:-.venv/bin/python}" -m medpalm_m.launch_local --num_processes="$num_processes" \
  --devices_per_process="$devices" -- -m medpalm_m.train --config="$config" --workdir="$workdir" "$@"
