"""Wall time of importing a Gemma 3 checkpoint of about 1B parameters, and of a 64-token answer.

    .venv/bin/python benchmarks/open_weights.py [--text_layers=16] [--image_size=448] [--out=DIR]

Builds a random Gemma 3 multimodal checkpoint with transformers (SigLIP-so400m's vision tower,
a Gemma 3 1B-like text model with Gemma's 262,208-row vocabulary), saved in bfloat16 as the Hub
stores it, with a small SentencePiece tokenizer of Gemma's layout. Then times, one process:
`convert import` (read, convert to float32, write the orbax checkpoint) and `generate` of 64
greedy tokens from a PNG (restore, compile, prefill, decode), each as the library call its
command makes. The checkpoint's writing is not timed. Needs torch and transformers
(requirements-test.txt).
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402

from medpalm_m import evaluation, runtime  # noqa: E402
from medpalm_m.convert import import_checkpoint  # noqa: E402
from medpalm_m.model import decode  # noqa: E402

VOCAB = 262_208  # Gemma 3's embedding rows


def gemma3_config(text_layers: int, image_size: int) -> transformers.Gemma3Config:
  vision = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                num_hidden_layers=27, num_attention_heads=16, image_size=image_size, patch_size=14,
                vision_use_head=False)
  text = dict(vocab_size=VOCAB, hidden_size=1152, intermediate_size=6912,
              num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=1,
              head_dim=256, sliding_window=512, query_pre_attn_scalar=256, rope_theta=1e6,
              rope_local_base_freq=1e4)
  return transformers.Gemma3Config(vision_config=vision, text_config=text, mm_tokens_per_image=256,
                                   image_token_index=262_144, boi_token_index=255_999,
                                   eoi_token_index=256_000)


def tokenizer_model(path: str) -> None:
  """A small SentencePiece model with Gemma's special ids (pad, eos, bos, unk, mask)."""
  words = "chest xray shows no effusion left lower lobe opacity normal heart size".split()
  rng = np.random.default_rng(0)
  proto = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(" ".join(rng.choice(words, 8)) for _ in range(200)), model_writer=proto,
      vocab_size=300, model_type="bpe", byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", num_threads=1,
      minloglevel=2, user_defined_symbols=["<mask>"])
  with open(path, "wb") as f:
    f.write(proto.getvalue())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--text_layers", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=448)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--out", default=None, help="where to write the checkpoint (default: a temp dir)")
  args = parser.parse_args()
  root = args.out or tempfile.mkdtemp(prefix="open_weights_")
  hf_dir, workdir = os.path.join(root, "hf"), os.path.join(root, "imported")

  os.makedirs(hf_dir, exist_ok=True)
  tokenizer_model(os.path.join(hf_dir, "tokenizer.model"))
  torch.manual_seed(0)
  model = transformers.Gemma3ForConditionalGeneration(gemma3_config(args.text_layers, args.image_size))
  with torch.no_grad():
    model.get_input_embeddings().weight[1] = 0.0  # a random EOS would end the answer early
  parameters = sum(p.numel() for p in model.parameters())
  model.to(torch.bfloat16).save_pretrained(hf_dir)
  del model
  print(f"{parameters / 1e9:.2f}B parameters written in bfloat16 to {hf_dir}", file=sys.stderr)

  cfg = runtime.base_config()
  cfg.data.max_prompt_tokens, cfg.data.max_target_tokens = 384, 8  # 256 image tokens and text
  start = time.perf_counter()
  summary = import_checkpoint(hf_dir, workdir, cfg)
  import_seconds = time.perf_counter() - start
  print(f"import: {import_seconds:.1f} s", file=sys.stderr)

  image = os.path.join(root, "scan.png")
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 480, 3), np.uint8)).save(image)
  start = time.perf_counter()
  answer = evaluation.answer(runtime.load_config(workdir), workdir, "<img>chest xray shows", [image],
                             sampling=decode.SamplingConfig(max_new_tokens=args.new_tokens))
  generate_seconds = time.perf_counter() - start
  print(json.dumps({
      "parameters": parameters, "stored": "bfloat16", "image_size": args.image_size,
      "text_layers": args.text_layers, "import_seconds": round(import_seconds, 1),
      "import_convert_seconds": round(summary["convert_seconds"], 1),
      "generate_seconds": round(generate_seconds, 1), "new_tokens": len(answer["token_ids"]),
      "cpu_cores": os.cpu_count()}, indent=2))


if __name__ == "__main__":
  main()
