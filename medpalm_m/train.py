"""Train Med-PaLM M: `python -m medpalm_m.train --config=configs/tiny.py --workdir=DIR [--config.key=value ...]`

Rerunning the same command resumes from the latest checkpoint in DIR (data iterator included).
SIGTERM (preemption) saves and exits 0, at any moment. A mistake in the flags, the config or the
data is one `error:` line, exit 2, with DIR untouched; a run that diverges or cannot write its
checkpoint stops with one `error:` line, exit 1. The loop is `medpalm_m.trainer.train`.
"""

from medpalm_m import allocator, preemption

if __name__ == "__main__":
  allocator.restart_with_tunables()  # before the SIGTERM handler, which the restart would drop

# From the first line on, SIGTERM is a request to stop, not a kill: a preemption that lands
# during imports or compilation still exits 0 and says what was saved.
preemption.listen()

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from medpalm_m import checkpoint, runtime, trainer, user_errors  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Path to an ml-collections config file.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")


def main(argv) -> None:
  del argv
  if flags.FLAGS.workdir is None or flags.FLAGS.config is None:
    raise app.UsageError("--config and --workdir are required")
  runtime.quiet_libraries()
  runtime.initialize_distributed()
  trainer.train(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  with user_errors.as_lines(failures=(trainer.DivergenceError, checkpoint.CheckpointSaveError)):
    app.run(main, flags_parser=user_errors.parse_flags)
