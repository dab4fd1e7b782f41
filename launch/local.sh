#!/usr/bin/env bash
# Train and evaluate one config on this machine (CPU or local GPUs/TPU), then print the table.
#   launch/local.sh CONFIG WORKDIR [--config.key=value ...]
# Several processes: launch/multiprocess.sh (this CPU), launch/tpu_pod.sh, launch/slurm_gpu.sbatch.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: launch/local.sh CONFIG WORKDIR [--config.key=value ...]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [--config.key=value ...]}
shift 2
python=${PYTHON:-.venv/bin/python}
"$python" -m medpalm_m.train --config="$config" --workdir="$workdir" "$@"
"$python" -m medpalm_m.evaluate --config="$config" --workdir="$workdir" "$@"
