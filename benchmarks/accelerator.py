"""Training MFU and decoding speed of each attention implementation, on whatever JAX computes on.

    .venv/bin/python benchmarks/accelerator.py [--sizes=bench-small,1b] [--dtype=bfloat16] \
        [--batch_size=8] [--decode_batches=1,64] [--repeats=5] [--write]

One process, one backend (GPU, TPU or CPU). For every size and every `config.model.attention_impl`
that runs on this backend (xla and blocked everywhere, cudnn on GPU, splash on TPU), side by side:

  train   the Trainer's jitted step (forward, backward, AdamW) on the peer benchmark's sequences
          (1 image + 60 prompt + 64 target tokens, prefix-LM): median seconds per step, model FLOP
          utilization against this backend's peak in --dtype (MaxText-style FLOP counting,
          medpalm_m/flops.py), and XLA's peak temporary memory of the compiled step.
  decode  greedy decoding with the KV cache, 64 new tokens after the prompt, at each batch of
          --decode_batches: median tokens/s.

The peak is the chip's published dense peak on GPU and TPU, and a jitted 2048^3 matmul in --dtype
(best of 10) on a CPU. --write puts the tables into benchmarks/RESULTS.md under "Attention
implementations", replacing that backend's previous table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peer  # noqa: E402  (the bench-small shapes, sequences and the Trainer's step)
from medpalm_m import flops  # noqa: E402
from medpalm_m.model.medpalm import ModelConfig  # noqa: E402

# About 1B parameters: PaLM-style MQA decoder of width 2048, 16 layers (0.99B with its
# embedding), behind bench-small's ViT.
peer.SIZES.setdefault("1b", ((384, 6, 6, 1536), (2048, 16, 16, 1, 128, 8192, 32000)))

ON_BACKEND = {"cpu": ["xla", "blocked"], "gpu": ["xla", "blocked", "cudnn"],
              "tpu": ["xla", "blocked", "splash"]}

# Published dense bf16 peaks, FLOP/s per chip (what MaxText's MFU divides by).
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "TPU v4": 275e12,
         "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
         "TPU v6 lite": 918e12, "TPU v6e": 918e12}

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "## Attention implementations (`benchmarks/accelerator.py`)"


def describe_device() -> str:
  device = jax.devices()[0]
  if device.platform != "cpu":
    return f"{len(jax.devices())} x {device.device_kind} ({device.platform}); jax {jax.__version__}"
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
  except (OSError, subprocess.CalledProcessError, AttributeError):
    model = "unknown CPU"
  return f"{os.cpu_count()} cores of {model} (lscpu); jax {jax.__version__} (cpu)"


def peak_flops(dtype: str) -> tuple[float, str]:
  device = jax.devices()[0]
  if device.platform != "cpu":
    kind = next((k for k in sorted(PEAKS, key=len, reverse=True) if k in device.device_kind), None)
    if kind is None:
      raise SystemExit(f"error: no published peak for device {device.device_kind!r}: add it to PEAKS "
                       "in benchmarks/accelerator.py")
    return PEAKS[kind], f"{device.device_kind} published dense peak"
  a = jnp.ones((2048, 2048), dtype)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = min(peer.timed(lambda: matmul(a).block_until_ready(), 10))
  return 2 * 2048 ** 3 / best, f"jitted 2048^3 {dtype} matmul, best of 10"


def model_config(size: str, impl: str, dtype: str) -> ModelConfig:
  return dataclasses.replace(peer.our_config(size), attention_impl=impl, dtype=dtype)


def train_rows(size: str, impls: list[str], args, peak: float) -> list[str]:
  batch = peer.sequences(args.batch_size)
  seq_len = batch["tokens"].shape[1]
  rows = []
  for impl in impls:
    cfg = model_config(size, impl, args.dtype)
    step_flops = flops.training_flops_per_step(cfg, args.batch_size, seq_len, 1)
    step = peer.our_train_step(size, batch, cfg)
    temp = step.compiled().memory_analysis().temp_size_in_bytes
    step()  # compile and warm up
    times = peer.timed(step, args.repeats)
    median = statistics.median(times)
    rows.append(f"| {size} | {cfg.num_params()['total'] / 1e6:.0f}M | {impl} | {median:.3f} | "
                f"{100 * step_flops / median / peak:.1f}% | {temp / 2 ** 20:.0f} MiB | {peer.fmt_times(times)} |")
    print(rows[-1], flush=True)
  return rows


def decode_rows(size: str, impls: list[str], args) -> list[str]:
  rows = []
  for b in args.decode_batches:
    batch = peer.sequences(b)
    for impl in impls:
      run = peer.our_decoder(size, batch, model_config(size, impl, args.dtype))
      run()  # compile and warm up
      times = peer.timed(run, args.repeats)
      rows.append(f"| {size} | {b} | {impl} | {b * peer.TARGET / statistics.median(times):.1f} | "
                  f"{peer.fmt_times(times)} |")
      print(rows[-1], flush=True)
  return rows


def write_results(table: str, backend: str) -> None:
  """Replace this backend's table under SECTION (the section is created at the end if absent)."""
  with open(RESULTS) as f:
    text = f.read()
  if SECTION not in text:
    text = text.rstrip("\n") + f"\n\n{SECTION}\n"
  head, _, rest = text.partition(SECTION)
  body, sep, tail = rest.partition("\n## ")
  marker = f"\n<!-- accelerator.py: {backend} -->\n"
  blocks = re.split(r"(?=\n<!-- accelerator\.py: )", body)
  blocks = [b for b in blocks if not b.startswith(marker)]
  body = "".join(blocks).rstrip("\n") + "\n" + marker + table + "\n"
  with open(RESULTS, "w") as f:
    f.write(head + SECTION + body + (sep + tail if sep else ""))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="bench-small,1b")
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  parser.add_argument("--impls", default="", help="comma-separated; default: all that run here")
  parser.add_argument("--batch_size", type=int, default=8, help="training batch")
  parser.add_argument("--decode_batches", default="1,64")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS.md")
  args = parser.parse_args()
  args.decode_batches = [int(b) for b in args.decode_batches.split(",") if b]
  backend = jax.default_backend()
  impls = args.impls.split(",") if args.impls else ON_BACKEND.get(backend, ["xla", "blocked"])
  sizes = args.sizes.split(",")
  unknown = set(sizes) - set(peer.SIZES)
  if unknown:
    parser.error(f"unknown --sizes {sorted(unknown)}; known: {sorted(peer.SIZES)}")

  peak, peak_source = peak_flops(args.dtype)
  lines = [f"{describe_device()}. Peak {peak / 1e12:.2f} TFLOP/s ({peak_source}). {args.dtype}, "
           f"medians of {args.repeats} runs after a warm-up. Command: `benchmarks/accelerator.py "
           f"{' '.join(sys.argv[1:])}`", "",
           f"Training step, batch {args.batch_size} x {peer.NUM_PATCHES + peer.PROMPT_TEXT + peer.TARGET} "
           "tokens, AdamW:", "",
           "| size | params | attention_impl | s/step (median) | MFU | XLA peak temp memory | runs s |",
           "|---|---|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)
  for size in sizes:
    lines += train_rows(size, impls, args, peak)
  if args.decode_batches:
    header = ["", f"Greedy decoding, {peer.TARGET} new tokens after 1 image + {peer.PROMPT_TEXT} text tokens:",
              "", "| size | batch | attention_impl | tokens/s (median) | runs s |", "|---|---|---|---|---|"]
    print("\n".join(header), flush=True)
    lines += header
    for size in sizes:
      lines += decode_rows(size, impls, args)
  if args.write:
    write_results("\n".join(lines), backend)


if __name__ == "__main__":
  main()
