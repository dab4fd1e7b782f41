"""Ask a trained checkpoint a question about images, at a terminal.

    python -m medpalm_m.generate --workdir=DIR --image=scan.dcm --prompt="Given <img>. Q: Is there an effusion? A:"

    python -m medpalm_m.generate --workdir=IMPORTED_MEDGEMMA_IT --chat --image=cxr.png \
      --prompt="<img>Describe this X-ray"

The workdir's config.json describes the model (or pass --config), and how its images and prompt
are prepared: an imported checkpoint's own processor's layout (convert import records it).
Images are PNG, JPEG or DICOM, one per `<img>` in the prompt, in order. --chat puts the prompt
into the checkpoint's chat template (the -it models' user and model turns). Greedy by default (the
paper's evaluation); --temperature/--top_k/--top_p sample, --beam_width searches. --json prints
the prompt's and the answer's token ids (an id past the tokenizer shows as `<unk:ID>`) and their
probabilities. The library is `medpalm_m.evaluation.answer`.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from medpalm_m import evaluation, runtime, user_errors
from medpalm_m.model import decode

config_flags.DEFINE_config_file("config", None, "Config file; default: the workdir's config.json.")
flags.DEFINE_string("workdir", None, "Training workdir (checkpoints/ and config.json).", required=True)
flags.DEFINE_string("prompt", None, "Prompt with one <img> per --image.", required=True)
flags.DEFINE_multi_string("image", None, "Image file (PNG, JPEG, DICOM); repeat for several.")
flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
flags.DEFINE_integer("max_new_tokens", 64, "Most tokens to generate.")
flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).")
flags.DEFINE_float("top_p", 1.0, "Nucleus sampling threshold.")
flags.DEFINE_integer("beam_width", 1, "Beam search when > 1.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_bool("json", False, "Print JSON with token ids and probabilities.")
flags.DEFINE_bool("chat", False, "Apply the checkpoint's chat template (instruction-tuned models).")


def main(argv) -> None:
  del argv
  FLAGS = flags.FLAGS
  runtime.quiet_libraries()
  runtime.initialize_distributed()  # a pod slice or SLURM job evaluates as it trains
  cfg = runtime.load_config(FLAGS.workdir, FLAGS.config)
  sampling = decode.SamplingConfig(max_new_tokens=FLAGS.max_new_tokens, temperature=FLAGS.temperature,
                                   top_k=FLAGS.top_k, top_p=FLAGS.top_p)
  result = evaluation.answer(cfg, FLAGS.workdir, FLAGS.prompt, FLAGS.image or [], step=FLAGS.step,
                             sampling=sampling, beam_width=FLAGS.beam_width, seed=FLAGS.seed,
                             chat=FLAGS.chat)
  print(json.dumps(result, indent=2) if FLAGS.json else result["answer"])


if __name__ == "__main__":
  with user_errors.as_lines():
    app.run(main, flags_parser=user_errors.parse_flags)
