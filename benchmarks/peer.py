"""medpalm_m side by side with the `transformers` PaliGemma peer, on this machine's CPU: float32,
or bfloat16 matmul inputs on both sides (`--matmul_operand_dtype=bfloat16 --peer_autocast`).

Three measurements. Each side runs in a worker process of its own (ours with the glibc tunables
our entry points set, medpalm_m/allocator.py; the peer with nothing set), and the two take turns,
so both see the same machine state without sharing an allocator or thread pools (`--in_process`:
both in this process):

  roofline  the machine's limits: fp32 matmul peak (jitted 2048x2048 matmul, and torch's for
            comparison) and memory read bandwidth (a jitted sum over 1 GiB).
  train     one training step (forward, backward, AdamW update) at the same shapes, runs
            alternating between the two implementations; medians, the ratio, and model FLOP
            utilization (MaxText-style FLOP counting, medpalm_m/flops.py) against the peak.
  decode    greedy decoding with a KV cache, 64 new tokens after a multimodal prompt (one image +
            text), at batch 1 and 16; tokens/s, the ratio, and the bandwidth roofline: every new
            token reads all decoder weights once, plus the KV cache.

  .venv/bin/python benchmarks/peer.py roofline
  .venv/bin/python benchmarks/peer.py train --sizes=small,bench-small,large --repeats=5
  .venv/bin/python benchmarks/peer.py decode --sizes=bench-small --batch_sizes=1,16 --repeats=3

Both models are built at the same shapes with the same architecture choices, so the FLOPs are
the same: SigLIP-like ViT (no class token) -> linear projector -> Gemma-style decoder (sequential
block, RMSNorm, GeGLU, embeddings scaled by sqrt(width), tied output embedding, multi-query
attention, prefix-LM attention over image + prompt). The peer's small differences (biases in its
ViT, its projector) are counted in its parameter count and are well under 1% of its FLOPs.
The peer runs as a user would run it: eager PyTorch with its default attention (SDPA) and
`generate()` with its default dynamic cache; torch gets as many threads as there are cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from medpalm_m import flops
from medpalm_m.model import decode
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.template import ModelTemplate

IMAGE_SIZE, PATCH = 224, 16
NUM_PATCHES = (IMAGE_SIZE // PATCH) ** 2  # 196
PROMPT_TEXT, TARGET = 60, 64  # tokens: [image 196][bos + prompt 60][target 64] = 320
IMAGE_ID, BOS = 4, 2

# The bench-small, one size below and one above. (vit width, depth, heads, mlp) and
# (decoder width, depth, heads, kv heads, head dim, mlp, vocab).
SIZES = {
    "small": ((192, 4, 3, 768), (256, 4, 4, 1, 64, 1024, 32000)),
    "bench-small": ((384, 6, 6, 1536), (512, 8, 8, 1, 64, 2048, 32000)),
    "large": ((384, 6, 6, 1536), (768, 12, 12, 1, 64, 3072, 32000)),
}


def describe_machine() -> str:
  cpu = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  import torch
  import transformers
  return (f"{os.cpu_count()} cores, {cpu}, {platform.machine()}; jax {jax.__version__} "
          f"({jax.devices()[0].platform}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}")


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


# Machine limits ---------------------------------------------------------------------------------

def matmul_peak(n: int = 2048, repeats: int = 10) -> tuple[float, float]:
  """(jax, torch) fp32 matmul GFLOP/s, best of `repeats` (a peak is the best the machine does)."""
  import torch
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best_jax = min(timed(lambda: matmul(a).block_until_ready(), repeats))
  t = torch.randn(n, n)
  t @ t
  best_torch = min(timed(lambda: t @ t, repeats))
  return 2 * n ** 3 / best_jax / 1e9, 2 * n ** 3 / best_torch / 1e9


def read_bandwidth(gib: float = 1.0, repeats: int = 10) -> float:
  """GB/s of a jitted sum over a buffer much larger than the caches, best of `repeats`."""
  x = jnp.ones((int(gib * 2 ** 30) // 4,), jnp.float32)
  total = jax.jit(jnp.sum)
  total(x).block_until_ready()
  best = min(timed(lambda: total(x).block_until_ready(), repeats))
  return x.nbytes / best / 1e9


# The two implementations at one size ---------------------------------------------------------

def our_config(size: str, attention_impl: str = "xla", matmul_operand_dtype: str = "float32") -> ModelConfig:
  (vw, vd, vh, vm), (w, d, h, kv, hd, m, vocab) = SIZES[size]
  return ModelConfig.from_dict(dict(
      vit=dict(image_size=IMAGE_SIZE, patch_size=PATCH, width=vw, depth=vd, num_heads=vh, mlp_dim=vm),
      decoder=dict(vocab_size=vocab, width=w, depth=d, num_heads=h, num_kv_heads=kv, head_dim=hd,
                   mlp_dim=m, block="sequential", norm="rmsnorm", mlp_activation="geglu",
                   scale_embeddings=True),
      image_token_id=IMAGE_ID, attention="prefix_lm", dtype="float32", attention_impl=attention_impl,
      matmul_operand_dtype=matmul_operand_dtype))


def peer_model(size: str):
  from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipVisionConfig
  (vw, vd, vh, vm), (w, d, h, kv, hd, m, vocab) = SIZES[size]
  config = PaliGemmaConfig(
      vision_config=SiglipVisionConfig(hidden_size=vw, num_hidden_layers=vd, num_attention_heads=vh,
                                       intermediate_size=vm, image_size=IMAGE_SIZE, patch_size=PATCH,
                                       projection_dim=w).to_dict(),
      text_config=GemmaConfig(vocab_size=vocab, hidden_size=w, num_hidden_layers=d, num_attention_heads=h,
                              num_key_value_heads=kv, head_dim=hd, intermediate_size=m).to_dict(),
      image_token_index=IMAGE_ID, projection_dim=w, hidden_size=w, vocab_size=vocab)
  model = PaliGemmaForConditionalGeneration(config)
  return model.float()


def sequences(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
  """One image then text: [image slots][bos + prompt][target], the prompt (image included) is the
  prefix, the target is causal and carries the loss."""
  rng = np.random.default_rng(seed)
  text = rng.integers(10, 32000, size=(batch, PROMPT_TEXT - 1 + TARGET))
  tokens = np.concatenate([np.full((batch, NUM_PATCHES), IMAGE_ID), np.full((batch, 1), BOS), text], 1)
  prefix = NUM_PATCHES + PROMPT_TEXT
  target = np.arange(tokens.shape[1]) >= prefix
  return {
      "tokens": tokens.astype(np.int32),
      "images": rng.integers(0, 256, size=(batch, 1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
      "input_mask": np.ones(tokens.shape, bool),
      "mask_ar": np.broadcast_to(target, tokens.shape).astype(np.int32),
      "mask_loss": np.broadcast_to(target, tokens.shape).astype(np.int32),
  }


def our_train_step(size: str, batch: dict[str, np.ndarray],
                   model_cfg: ModelConfig | None = None) -> Callable[[], None]:
  """The Trainer's own jitted step (the code `python -m medpalm_m.train` runs), with AdamW.
  `model_cfg` replaces the size's config (benchmarks/accelerator.py: other dtypes, attention)."""
  from medpalm_m import runtime
  from medpalm_m.trainer import Trainer
  cfg = runtime.base_config()
  cfg.model = dataclasses.asdict(model_cfg or our_config(size))
  cfg.train.update(batch_size=len(batch["tokens"]), z_loss=0.0)
  # The layout of `sequences` (BOS + prompt + target + EOS = its length, TARGET tokens of target),
  # which config.train.loss_positions="auto" reads: the loss projects TARGET + 1 positions a row.
  cfg.data.update(max_prompt_tokens=NUM_PATCHES + PROMPT_TEXT - 2, max_target_tokens=TARGET)
  cfg.optimizer.update(name="adamw", learning_rate=1e-4, clip_norm=0.0)
  trainer = Trainer(cfg, num_tasks=1)
  state = trainer.init_state()
  b = len(batch["tokens"])
  full = dict(batch, task_id=np.zeros(b, np.int32), prompt_truncated=np.zeros(b, bool),
              target_truncated=np.zeros(b, bool), dropped=np.zeros(b, bool))
  device_batch = trainer.global_batch(full)
  holder = {"state": state}

  def step():
    holder["state"], metrics = trainer.train_step(holder["state"], device_batch)
    jax.block_until_ready(metrics["loss"])

  step.compiled = lambda: trainer.train_step.lower(holder["state"], device_batch).compile()
  return step


def peer_precision(autocast: bool):
  """The peer's counterpart of our bfloat16 matmul operands: torch's CPU autocast, which runs
  matmuls (and its SDPA) with bfloat16 inputs, and on AMX CPUs through oneDNN's AMX kernels,
  while the weights and the optimizer stay float32."""
  import contextlib
  import torch
  return torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()


def peer_train_step(size: str, batch: dict[str, np.ndarray], autocast: bool = False) -> Callable[[], None]:
  import torch
  torch.manual_seed(0)
  model = peer_model(size)
  model.train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
  inputs = peer_inputs(batch)
  labels = torch.where(inputs["token_type_ids"].bool(), inputs["input_ids"], -100)

  def step():
    optimizer.zero_grad(set_to_none=True)
    with peer_precision(autocast):
      loss = model(**inputs, labels=labels).loss
    loss.backward()
    optimizer.step()

  return step


def peer_inputs(batch: dict[str, np.ndarray], prompt_only: bool = False) -> dict:
  import torch
  tokens = batch["tokens"]
  if prompt_only:
    tokens = tokens[:, :NUM_PATCHES + PROMPT_TEXT]
  pixels = batch["images"][:, 0].astype(np.float32) / 127.5 - 1.0
  # PaliGemma's token_type_ids: 0 for image + prefix (bidirectional), 1 for the suffix.
  token_type = (np.arange(tokens.shape[1]) >= NUM_PATCHES + PROMPT_TEXT).astype(np.int64)
  return {
      "input_ids": torch.from_numpy(tokens.astype(np.int64)),
      "pixel_values": torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))),
      "attention_mask": torch.ones(tokens.shape, dtype=torch.long),
      "token_type_ids": torch.from_numpy(np.broadcast_to(token_type, tokens.shape).copy()),
  }


def our_decoder(size: str, batch: dict[str, np.ndarray],
                model_cfg: ModelConfig | None = None) -> Callable[[], np.ndarray]:
  """Greedy decoding as medpalm_m.evaluate runs it: one jitted prefill + scan over the cache."""
  template, params = ModelTemplate.create(model_cfg or our_config(size), seed=0)
  sampling = decode.SamplingConfig(max_new_tokens=TARGET)
  prefix = NUM_PATCHES + PROMPT_TEXT
  tokens = jnp.asarray(batch["tokens"][:, :prefix])
  b = tokens.shape[0]
  images = jnp.asarray(batch["images"])
  prompt_length = jnp.full((b,), prefix, jnp.int32)
  mask_ar = jnp.zeros_like(tokens)

  @jax.jit
  def run(params, tokens, images):
    # eos_id=-1: no token stops decoding, so every run makes exactly TARGET tokens, as the peer's
    # min_new_tokens does.
    new_tokens, _ = decode.generate(template.bind(params), tokens, images, prompt_length, mask_ar,
                                    sampling, eos_id=-1)
    return new_tokens

  return lambda: np.asarray(run(params, tokens, images))


def peer_decoder(size: str, batch: dict[str, np.ndarray], autocast: bool = False) -> Callable[[], object]:
  import torch
  torch.manual_seed(0)
  model = peer_model(size).eval()
  inputs = peer_inputs(batch, prompt_only=True)

  def run():
    with torch.inference_mode(), peer_precision(autocast):
      return model.generate(**inputs, max_new_tokens=TARGET, min_new_tokens=TARGET, do_sample=False,
                            eos_token_id=None, pad_token_id=0)

  return run


# Reports --------------------------------------------------------------------------------------

# Each side in its own process (the default): in one process, beside torch, our training step took
# 7.4 s where it took 5.1 s alone (3.96 s with the huge pages our entry points run with), so a
# shared process measures the co-tenancy, not the implementation. The workers still take turns, so
# both see the same machine state.

def _serve(conn, spec: tuple) -> None:
  """A worker process: build one side's callable from `spec`, then run it and send its time back
  each time it is asked, until it is told to stop."""
  import torch
  torch.set_num_threads(os.cpu_count())
  fn = _build(*spec)
  conn.send("ready")
  while conn.recv():
    start = time.perf_counter()
    fn()
    conn.send(time.perf_counter() - start)


def _build(what: str, side: str, size: str, batch_size: int, model_cfg: dict, peer_autocast: bool):
  batch = sequences(batch_size)
  cfg = ModelConfig.from_dict(model_cfg)
  if what == "train":
    return our_train_step(size, batch, cfg) if side == "ours" else peer_train_step(size, batch, peer_autocast)
  return our_decoder(size, batch, cfg) if side == "ours" else peer_decoder(size, batch, peer_autocast)


class Worker:
  """One side in a spawned process; calling it runs the side once and returns the seconds it took."""

  def __init__(self, spec: tuple, env: dict[str, str]):
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    self.conn, child = context.Pipe()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # a spawned process starts with the parent's environment
    try:
      self.process = context.Process(target=_serve, args=(child, spec), daemon=True)
      self.process.start()
    finally:
      for k, v in saved.items():
        if v is None:
          os.environ.pop(k)
        else:
          os.environ[k] = v
    if self.conn.recv() != "ready":
      raise RuntimeError(f"worker for {spec[:3]} did not start")

  def __call__(self) -> float:
    self.conn.send(True)
    return self.conn.recv()

  def close(self) -> None:
    self.conn.send(False)
    self.process.join()


def sides(what: str, size: str, batch_size: int, cfg: ModelConfig, peer_autocast: bool,
          in_process: bool) -> tuple[Callable[[], float], Callable[[], float], Callable[[], None]]:
  """(ours, peer, close): callables that run one side once and return its seconds. Ours runs as
  `python -m medpalm_m.train` and `evaluate` run, with their glibc tunables (medpalm_m.allocator);
  the peer as a user runs it, with nothing set."""
  if in_process:
    fns = [_build(what, side, size, batch_size, dataclasses.asdict(cfg), peer_autocast) for side in ("ours", "peer")]
    return (lambda: timed(fns[0], 1)[0]), (lambda: timed(fns[1], 1)[0]), (lambda: None)
  from medpalm_m import allocator
  ours = Worker((what, "ours", size, batch_size, dataclasses.asdict(cfg), peer_autocast),
                {allocator.TUNABLES: allocator.tunables()})
  peer = Worker((what, "peer", size, batch_size, dataclasses.asdict(cfg), peer_autocast), {})
  return ours, peer, lambda: (ours.close(), peer.close())


def alternate(ours: Callable[[], float], peer: Callable[[], float], repeats: int,
              warmup: int = 1) -> tuple[list[float], list[float]]:
  for _ in range(warmup):
    ours()
    peer()
  ours_t, peer_t = [], []
  for _ in range(repeats):
    ours_t.append(ours())
    peer_t.append(peer())
  return ours_t, peer_t


def fmt_times(times: list[float]) -> str:
  return ", ".join(f"{t:.3f}" for t in times)


def precision_line(matmul_operand_dtype: str, peer_autocast: bool) -> str:
  return (f"medpalm_m matmul operands {matmul_operand_dtype}, peer "
          f"{'torch.autocast bfloat16' if peer_autocast else 'float32'}")


def train_report(sizes: list[str], batch_size: int, repeats: int, peak: float,
                 attention_impl: str, matmul_operand_dtype: str = "float32",
                 peer_autocast: bool = False, in_process: bool = False) -> None:
  print(f"\n## Training step, batch {batch_size} x {NUM_PATCHES + PROMPT_TEXT + TARGET} tokens, AdamW, "
        f"{precision_line(matmul_operand_dtype, peer_autocast)}, medpalm_m attention_impl={attention_impl}\n")
  print("| size | params | model GFLOP/step | medpalm_m s/step (median) | peer s/step (median) | "
        "speed-up | medpalm_m % of peak | peer % of peak | runs (ours; peer) |")
  print("|---|---|---|---|---|---|---|---|---|")
  for size in sizes:
    cfg = our_config(size, attention_impl, matmul_operand_dtype)
    batch = sequences(batch_size)
    step_flops = flops.training_flops_per_step(cfg, batch_size, batch["tokens"].shape[1], 1)
    ours_side, peer_side, close = sides("train", size, batch_size, cfg, peer_autocast, in_process)
    ours, peer = alternate(ours_side, peer_side, repeats)
    close()
    mo, mp = statistics.median(ours), statistics.median(peer)
    print(f"| {size} | {cfg.num_params()['total'] / 1e6:.1f}M | {step_flops / 1e9:.0f} | {mo:.3f} | {mp:.3f} | "
          f"{mp / mo:.2f}x | {100 * step_flops / mo / 1e9 / peak:.0f}% | "
          f"{100 * step_flops / mp / 1e9 / peak:.0f}% | {fmt_times(ours)}; {fmt_times(peer)} |", flush=True)


def decode_report(sizes: list[str], batch_sizes: list[int], repeats: int, bandwidth: float,
                  attention_impl: str, matmul_operand_dtype: str = "float32",
                  peer_autocast: bool = False, in_process: bool = False) -> None:
  print(f"\n## Greedy decoding, {TARGET} new tokens after 1 image + {PROMPT_TEXT} text tokens, "
        f"{precision_line(matmul_operand_dtype, peer_autocast)}, medpalm_m attention_impl={attention_impl}\n")
  print("| size | batch | medpalm_m tokens/s (median) | peer tokens/s (median) | speed-up | "
        "medpalm_m % of bandwidth roofline | runs s (ours; peer) |")
  print("|---|---|---|---|---|---|---|")
  for size in sizes:
    cfg = our_config(size, attention_impl, matmul_operand_dtype)
    dec = cfg.decoder
    weight_bytes = 4 * dec.num_params()
    for b in batch_sizes:
      ours_side, peer_side, close = sides("decode", size, b, cfg, peer_autocast, in_process)
      ours, peer = alternate(ours_side, peer_side, repeats)
      close()
      mo, mp = statistics.median(ours), statistics.median(peer)
      # The roofline counts only the decode steps' unavoidable reads: all decoder weights once per
      # step, plus the KV cache each step attends over (MQA: 2 x kv heads x head dim per token).
      cache_len = NUM_PATCHES + PROMPT_TEXT + TARGET
      kv_bytes = 4 * b * dec.depth * 2 * dec.num_kv_heads * dec.head_dim * cache_len
      roofline_tokens_per_s = b * bandwidth * 1e9 / (weight_bytes + kv_bytes)
      print(f"| {size} | {b} | {b * TARGET / mo:.1f} | {b * TARGET / mp:.1f} | {mp / mo:.2f}x | "
            f"{100 * (b * TARGET / mo) / roofline_tokens_per_s:.0f}% (roofline {roofline_tokens_per_s:.0f} tokens/s) | "
            f"{fmt_times(ours)}; {fmt_times(peer)} |", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("what", choices=["roofline", "train", "decode", "all"])
  parser.add_argument("--sizes", default="small,bench-small,large")
  parser.add_argument("--batch_size", type=int, default=8, help="training batch (the issue's: 8)")
  parser.add_argument("--batch_sizes", default="1,16", help="decoding batches")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--attention_impl", default="xla",
                      help="medpalm_m's config.model.attention_impl (xla, blocked)")
  parser.add_argument("--matmul_operand_dtype", default="float32",
                      help="medpalm_m's config.model.matmul_operand_dtype (float32, bfloat16, auto); "
                           "the peer stays float32 unless --peer_autocast")
  parser.add_argument("--peer_autocast", action="store_true",
                      help="run the peer's forward passes under torch.autocast('cpu', bfloat16), the "
                           "counterpart of --matmul_operand_dtype=bfloat16")
  parser.add_argument("--in_process", action="store_true",
                      help="run both sides in this one process (before 2026-12-03 the only way; it "
                           "slowed ours by up to 45%%) instead of a worker process each")
  args = parser.parse_args()
  import torch
  torch.set_num_threads(os.cpu_count())
  sizes = args.sizes.split(",")
  unknown = set(sizes) - set(SIZES)
  if unknown:
    parser.error(f"unknown --sizes {sorted(unknown)}; known: {sorted(SIZES)}")

  print(f"Machine: {describe_machine()}")
  peak_jax, peak_torch = matmul_peak()
  bandwidth = read_bandwidth()
  print(f"fp32 matmul peak (2048^3, best of 10): jax {peak_jax:.0f} GFLOP/s, torch {peak_torch:.0f} GFLOP/s; "
        f"memory read bandwidth (1 GiB sum, best of 10): {bandwidth:.1f} GB/s")
  peak = max(peak_jax, peak_torch)
  if args.what in ("train", "all"):
    train_report(sizes, args.batch_size, args.repeats, peak, args.attention_impl,
                 matmul_operand_dtype=args.matmul_operand_dtype, peer_autocast=args.peer_autocast,
                 in_process=args.in_process)
  if args.what in ("decode", "all"):
    decode_report(sizes, [int(b) for b in args.batch_sizes.split(",")], args.repeats, bandwidth,
                  args.attention_impl, matmul_operand_dtype=args.matmul_operand_dtype,
                  peer_autocast=args.peer_autocast, in_process=args.in_process)


if __name__ == "__main__":
  main()
