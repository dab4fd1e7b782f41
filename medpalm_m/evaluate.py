"""Evaluate a checkpoint on every task of the benchmark, as the paper does.

    python -m medpalm_m.evaluate --config=configs/tiny.py --workdir=DIR [--step=N] [--tasks=a,b] [--split=test]
    python -m medpalm_m.evaluate --config=configs/tiny.py --workdir=DIR --suite=zero_shot

Writes DIR/eval/step_N.json = {"step": N, "runtime": {"devices": D, "processes": P, "mesh": {...}},
"tasks": {task: {metric: value, "n": count, "baseline": {metric: value}}}} (values in percent;
the baseline is the majority-class or
most-frequent-answer score of the same metric on the same examples) and prints the table with
the paper's numbers beside ours. `--tasks` re-evaluates those tasks and keeps the step's other
results; a split other than config.eval.split is written to DIR/eval/step_N_<split>.json.
Predictions (medical text) are written only when asked (config.eval.write_predictions).
`--suite=NAME` evaluates a suite of config.evals instead (its tasks, trained on or not, its split
and decode settings) and writes DIR/eval/NAME/step_N.json, whose table names the suite.
`--config.eval.bootstrap=N` adds each metric's 95% paired-bootstrap interval of ours - baseline
("margin_ci95"; N resamples of the examples), so that "above the baseline" can be told from luck.
Evaluation is data-parallel over config.mesh (config.eval.batch_size counts examples over the
whole mesh) and joins a multi-host run as `train` does (TPU pod, SLURM, medpalm_m.launch_local):
each process reads and decodes its share of the examples, process 0 scores and writes. The
library is `medpalm_m.evaluation`.
"""

from medpalm_m import allocator

if __name__ == "__main__":
  allocator.restart_with_tunables()

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from medpalm_m import evaluation, runtime, user_errors  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Path to an ml-collections config file.")
flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
flags.DEFINE_list("tasks", None, "Tasks to evaluate; default: every task of the mixture (or the suite).")
flags.DEFINE_string("split", None, "Split; default: config.eval.split (or the suite's).")
flags.DEFINE_string("suite", None, "A suite of config.evals to evaluate instead of the mixture's tasks.")


def main(argv) -> None:
  del argv
  FLAGS = flags.FLAGS
  if FLAGS.workdir is None or FLAGS.config is None:
    raise app.UsageError("--config and --workdir are required")
  runtime.quiet_libraries()
  runtime.initialize_distributed()  # a pod slice or SLURM job evaluates as it trains
  report = evaluation.evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step, task_names=FLAGS.tasks,
                               split=FLAGS.split, suite=FLAGS.suite)
  if jax.process_index() == 0:
    print(evaluation.format_table(report))
    print(f"wrote {report['path']} ({report['wall_time_sec']:.0f}s)")


if __name__ == "__main__":
  with user_errors.as_lines():
    app.run(main, flags_parser=user_errors.parse_flags)
