"""Train Med-PaLM M: `python -m medpalm_m.train --config=configs/tiny.py --workdir=DIR [--config.key=value ...]`

Rerunning the same command resumes from the latest checkpoint in DIR (data iterator included).
SIGTERM (preemption) saves and exits 0. The loop is `medpalm_m.trainer.train`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from medpalm_m import checkpoint, runtime, trainer
from medpalm_m.data import pipeline, preprocess

config_flags.DEFINE_config_file("config", None, "Path to an ml-collections config file.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")


def main(argv) -> None:
  del argv
  if flags.FLAGS.workdir is None or flags.FLAGS.config is None:
    raise app.UsageError("--config and --workdir are required")
  runtime.quiet_libraries()
  runtime.initialize_distributed()
  try:
    trainer.train(flags.FLAGS.config, flags.FLAGS.workdir)
  except (trainer.NonFiniteLossError, checkpoint.IncompatibleCheckpointError,
          pipeline.MissingDataError, preprocess.ExampleError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
