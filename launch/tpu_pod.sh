#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: the same command on every worker, joined by
# jax.distributed.initialize() with JAX's own TPU detection (MEDPALM_M_DISTRIBUTED=auto).
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a [PROJECT=my-project] launch/tpu_pod.sh setup
#       copy this checkout (tracked and untracked, not ignored, files) to every worker into
#       $REPO_DIR (default: medpalm_m in the home directory) and install requirements.txt
#       plus jax[tpu] into $REPO_DIR/.venv
#   TPU_NAME=... ZONE=... launch/tpu_pod.sh train CONFIG WORKDIR [--config.key=value ...]
#       run python -m medpalm_m.train on every worker
#
# WORKDIR and config.data.data_dir must be paths that every worker sees (a Filestore NFS mount
# or a gcsfuse mount of a bucket): each worker writes its shards of every checkpoint there, and
# process 0 its metrics. Check the plan first: python -m medpalm_m.plan --config=CONFIG --topology=v5p-64
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: TPU_NAME=... ZONE=... launch/tpu_pod.sh setup | train CONFIG WORKDIR [--config.key=value ...]"
: "${TPU_NAME:?$usage}" "${ZONE:?$usage}"
REPO_DIR=${REPO_DIR:-medpalm_m}
JAX_TPU_REQUIREMENT=${JAX_TPU_REQUIREMENT:-jax[tpu]==0.10.2}
gcloud_args=(--zone="$ZONE" ${PROJECT:+--project="$PROJECT"})

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${gcloud_args[@]}" --worker=all --command="$1"
}

case "${1:-}" in
  setup)
    archive=$(mktemp -t medpalm_m.XXXXXX.tar.gz)
    trap 'rm -f "$archive"' EXIT
    git ls-files -z --cached --others --exclude-standard | tar -czf "$archive" --null -T -
    gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:medpalm_m.tar.gz" "${gcloud_args[@]}" --worker=all
    on_all_workers "mkdir -p $REPO_DIR && tar -xzf medpalm_m.tar.gz -C $REPO_DIR && cd $REPO_DIR \
      && python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt '$JAX_TPU_REQUIREMENT'"
    ;;
  train)
    shift
    config=${1:?$usage}
    workdir=${2:?$usage}
    shift 2
    command="cd $REPO_DIR && MEDPALM_M_DISTRIBUTED=auto .venv/bin/python -m medpalm_m.train"
    command+=" --config=$(printf '%q' "$config") --workdir=$(printf '%q' "$workdir")"
    for override in "$@"; do command+=" $(printf '%q' "$override")"; done
    on_all_workers "$command"
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
