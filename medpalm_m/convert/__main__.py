"""Command line for `medpalm_m.convert`.

    python -m medpalm_m.convert import --hf_dir=/ckpt/medgemma-4b-it --workdir=/ckpt/medgemma_imported
    python -m medpalm_m.convert export --workdir=W --out=/ckpt/medgemma_tuned [--step=N] [--source=IMPORTED]

import: --config is the run config written into the workdir around the imported model (its
optimizer shapes the saved optimizer state; default configs/paligemma_multimedbench.py);
--config.key=value overrides it. export: the workdir is an imported one or a run trained from
one (config.init_from), --source names the imported workdir when neither says it.
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from medpalm_m import repository, runtime, user_errors
from medpalm_m.convert import export_checkpoint, import_checkpoint

# absl loads a flag's default as the flag is defined: the default config imports `configs` here.
repository.use_configs()
_DEFAULT_CONFIG = repository.config_path("paligemma_multimedbench.py")

config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "import: run config around the imported model.")
flags.DEFINE_string("hf_dir", None, "import: Hugging Face folder (config.json, weights, tokenizer.model).")
flags.DEFINE_string("workdir", None, "import: the new workdir; export: the workdir to export.")
flags.DEFINE_string("out", None, "export: the Hugging Face folder to write.")
flags.DEFINE_integer("step", None, "export: checkpoint step; default: the latest.")
flags.DEFINE_string("source", None,
                    "export: the imported workdir; default: the workdir or its config.init_from.")


def main(argv) -> None:
  FLAGS = flags.FLAGS
  if len(argv) != 2 or argv[1] not in ("import", "export"):
    raise app.UsageError("usage: python -m medpalm_m.convert import|export --workdir=... (see --help)")
  runtime.quiet_libraries()
  if argv[1] == "import":
    if not FLAGS.hf_dir or not FLAGS.workdir:
      raise app.UsageError("import needs --hf_dir and --workdir")
    summary = import_checkpoint(FLAGS.hf_dir, FLAGS.workdir, FLAGS.config)
  else:
    if not FLAGS.workdir or not FLAGS.out:
      raise app.UsageError("export needs --workdir and --out")
    summary = export_checkpoint(FLAGS.workdir, FLAGS.out, step=FLAGS.step, source=FLAGS.source)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  with user_errors.as_lines():
    app.run(main, flags_parser=user_errors.parse_flags)
