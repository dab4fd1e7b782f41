"""Will a config fit a topology? Per-device memory of a training step, from shapes alone.

    python -m medpalm_m.plan --config=configs/medpalm_m_12b.py [--topology=v5p-64,2x8xH100]
                             [--check_xla] [--config.key=value ...]

Prints the parameter count and, per topology (default: config.topology), the config's mesh and
the bytes each device holds in a training step and in evaluation (KV cache and activations at
config.eval's batch and decode length) against the device's memory; exits 2 when a topology does
not fit either.
The library is `medpalm_m.planning`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from medpalm_m import planning, runtime, topology, user_errors

config_flags.DEFINE_config_file("config", None, "Path to an ml-collections config file.")
flags.DEFINE_string("topology", None, f"Comma-separated topologies ({topology.EXAMPLES}); "
                    "default: config.topology.")
flags.DEFINE_bool("check_xla", False, "Also compile the step on this machine's devices and "
                  "compare the estimate with XLA's memory analysis (small configs only).")
flags.mark_flags_as_required(["config"])


def main(argv) -> None:
  del argv
  runtime.quiet_libraries()
  cfg = flags.FLAGS.config
  names = flags.FLAGS.topology or cfg.topology
  if not names:
    raise app.UsageError(f"no topology: pass --topology (e.g. {topology.EXAMPLES}) or set "
                         "config.topology")
  state = planning.AbstractState.from_config(cfg)
  plans = [planning.make_plan(cfg, topology.parse(name), state) for name in names.split(",")]
  print(planning.format_plans(cfg, plans, config_flags.get_config_filename(flags.FLAGS["config"])))
  if flags.FLAGS.check_xla:
    from medpalm_m.trainer import Trainer  # compiling the real step needs the whole trainer
    trainer = Trainer(cfg, num_tasks=max(len(cfg.data.mixture), 1))
    print("\n" + planning.compare_with_xla(cfg, trainer))
  if not all(p.fits and p.evaluation.fits for p in plans):
    sys.exit(2)


if __name__ == "__main__":
  with user_errors.as_lines():
    app.run(main, flags_parser=user_errors.parse_flags)
