"""Evaluate parameters on the benchmark, as the paper does: greedy decoding scored with each task's
metrics; classification AUC from option log-likelihoods.

    report = evaluate(cfg, workdir)       # the latest checkpoint; writes eval/step_N.json
    report = evaluate(cfg, workdir, suite="zero_shot")   # a suite of config.evals: eval/zero_shot/

The report is {"step": N, "split": ..., "tasks": {task: {metric: value, "n": count,
"baseline": {metric: value}}}}, values in percent (plus "suite": name for a named suite);
`medpalm_m.evaluation.report` formats it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from medpalm_m import runtime as runtime_lib
from medpalm_m.data import pipeline, preprocess, tasks as tasks_lib
from medpalm_m.data import tokenizer as tok
from medpalm_m.evaluation import report as report_lib
from medpalm_m.evaluation import scoring
from medpalm_m.evaluation import suites
from medpalm_m.model import decode


class Evaluator:
  """Compiled decoding and option scoring of one model on the runtime's mesh; reused across calls,
  so a second evaluation compiles nothing new. Greedy decoding of config.eval.max_decode_tokens by
  default, stopping when every row has finished; a task with options decodes no more than its
  longest option. Option scoring runs each prompt once and scores every option through its cache;
  a task scored for AUC decodes its greedy answers from that same cache.
  `spec` is the sequence layout (default: the training one; a suite's may hold more images).

  Data-parallel: config.eval.batch_size counts examples over the whole mesh; each global batch is
  sharded over the batch axes, each process reads and preprocesses only the rows its devices
  hold, and the parameters keep their (training) shardings. The outputs (token ids, scores) come
  back replicated, so every process sees every row; the last batch is padded by wrapping around
  to the first examples, and those rows are dropped before anything is scored. `data_parallel=False`
  feeds every device the whole batch (one prompt at a terminal).
  """

  def __init__(self, runtime: runtime_lib.Runtime, tokenizer: tok.Tokenizer, *,
               sampling: decode.SamplingConfig | None = None, beam_width: int = 1,
               batch_size: int | None = None, data_parallel: bool = True,
               spec: preprocess.SequenceSpec | None = None):
    cfg = runtime.cfg
    self.runtime, self.cfg, self.template, self.tokenizer = runtime, cfg, runtime.template, tokenizer
    self.spec = spec or runtime.spec
    self.batch_size = batch_size or cfg.eval.batch_size
    sampling = sampling or decode.SamplingConfig(max_new_tokens=cfg.eval.max_decode_tokens)
    # An id past the tokenizer has no text: never sampled (greedy keeps the plain argmax).
    self.sampling = dataclasses.replace(sampling, vocab_limit=tokenizer.vocab_size)
    self.beam_width = beam_width
    replicated = NamedSharding(runtime.mesh, P())
    if data_parallel:
      shards = runtime.batch_shards()
      if self.batch_size % shards:
        raise ValueError(f"config.eval.batch_size={self.batch_size} does not split over the {shards} "
                         f"devices of the mesh's batch axes ({dict(runtime.mesh.shape)}); use a "
                         f"multiple of {shards}")
      self.batch_sharding = runtime.batch_sharding
    else:
      self.batch_sharding = replicated
    self.rows = runtime.process_rows(self.batch_size, self.batch_sharding)
    self.parts = self.batch_size // len(self.rows)
    self.examples_decoded = 0  # real (not padding) rows this process fed to decoding
    self.decode_batch = jax.jit(self._decode_fn, out_shardings=replicated)
    self._prefill = jax.jit(self._prefill_fn, static_argnames="width")
    self._score_option = jax.jit(self._score_option_fn, out_shardings=replicated)
    self._decode_and_score = jax.jit(self._decode_and_score_fn, out_shardings=replicated)

  def _decode_fn(self, params, batch, key=None, limit=None):
    """(new tokens [B, max_new_tokens], their log-probs [B, max_new_tokens] or None for beams);
    decoding stops after `limit` tokens (traced: every task shares one program)."""
    model = self.template.bind(params)
    prompt = decode.prompt_only(batch["tokens"], batch["prompt_length"], tok.PAD_ID)
    if self.beam_width > 1:
      new_tokens, _ = decode.beam_search(model, prompt, batch["images"], batch["prompt_length"],
                                         batch["mask_ar"], self.sampling.max_new_tokens,
                                         self.beam_width, tok.EOS_ID,
                                         constrain_cache=self.runtime.constrain_cache, limit=limit)
      return new_tokens, None
    return decode.generate(model, prompt, batch["images"], batch["prompt_length"], batch["mask_ar"],
                           self.sampling, tok.EOS_ID, key, constrain_cache=self.runtime.constrain_cache,
                           limit=limit)

  def _prefill_fn(self, params, batch, width: int):
    """The KV cache of each row's prompt, with room for `width` more tokens, and its last logits."""
    model = self.template.bind(params)
    prompt = decode.prompt_only(batch["tokens"], batch["prompt_length"], tok.PAD_ID)
    return decode.prefill(model, prompt, batch["images"], batch["prompt_length"], batch["mask_ar"], width,
                          self.runtime.constrain_cache)

  def _score_option_fn(self, params, cache, last_logits, prompt_length, dropped, continuation, mask):
    """Log-likelihood [B] of one option's tokens [W] (where mask) after every row's prompt; 0 for
    a dropped example, which has no target to score (as its empty loss mask gives)."""
    batch = prompt_length.shape[0]
    score = decode.continuation_logprob(self.template.bind(params), cache, last_logits, prompt_length,
                                        jnp.broadcast_to(continuation, (batch, continuation.shape[0])),
                                        jnp.broadcast_to(mask, (batch, mask.shape[0])))
    return jnp.where(dropped, 0.0, score)

  def _decode_and_score_fn(self, params, batch, limit, continuations, masks, num_options):
    """What decode_batch and option_scores give, (new tokens [B, max_new_tokens], log-likelihood
    of each option [B, K]), from one prefill: an option task's greedy answer and its scores for
    AUC read the same KV cache. Options past the traced `num_options` (the padding of
    `continuations` [K, W]) score 0; the cache has room for the longer of W and max_new_tokens."""
    model = self.template.bind(params)
    prompt = decode.prompt_only(batch["tokens"], batch["prompt_length"], tok.PAD_ID)
    length, rows = prompt.shape[1], prompt.shape[0]
    room = max(self.sampling.max_new_tokens, continuations.shape[1])
    cache, last = decode.prefill(model, prompt, batch["images"], batch["prompt_length"], batch["mask_ar"],
                                 room, self.runtime.constrain_cache)

    def score(k, scores):
      option = lambda x: jnp.broadcast_to(x[k], (rows, x.shape[1]))
      logprob = decode.continuation_logprob(model, cache, last, batch["prompt_length"], option(continuations),
                                            option(masks), length)
      return scores.at[:, k].set(jnp.where(batch["dropped"], 0.0, logprob))

    scores = jax.lax.fori_loop(0, num_options, score, jnp.zeros((rows, continuations.shape[0]), jnp.float32))
    new_tokens, _ = decode.generate_from_prefill(model, cache, last, batch["prompt_length"], length,
                                                 self.sampling, tok.EOS_ID, None,
                                                 self.runtime.constrain_cache, limit)
    return new_tokens, scores

  def global_batch(self, local_features: list[dict]) -> dict[str, jax.Array]:
    """The global batch whose rows `self.rows` are these features (this process's share)."""
    return self.runtime.global_batch(preprocess.collate(local_features), self.parts, self.batch_sharding)

  def _map_batches(self, fn, n: int, feature_at) -> list[np.ndarray]:
    """`fn` over global batches of rows 0..n-1 (the last one padded by wrapping around), each
    process building only its rows with `feature_at(row)`; returns fn's outputs for rows 0..n-1."""
    outputs = []
    for start in range(0, n, self.batch_size):
      local = [feature_at((start + r) % n) for r in self.rows]
      self.examples_decoded += sum(start + r < n for r in self.rows)
      outputs.append(jax.tree.map(np.asarray, fn(self.global_batch(local))))
    return outputs

  def decode(self, params, features: list[dict], limit: int | None = None) -> list[list[int]]:
    """The new token ids of every example (EOS-padded to max_new_tokens; at most `limit` of them,
    default max_new_tokens); every process passes the same list."""
    return self._decode_rows(params, len(features), features.__getitem__, limit)

  def _decode_rows(self, params, n: int, feature_at, limit: int | None = None) -> list[list[int]]:
    limit = np.int32(limit or self.sampling.max_new_tokens)
    outputs = self._map_batches(lambda batch: self.decode_batch(params, batch, None, limit)[0], n,
                                feature_at)
    return np.concatenate(outputs)[:n].tolist() if outputs else []

  def decode_limit(self, continuations: Sequence[Sequence[int]] | None) -> int:
    """Tokens to decode for a task: with options, its longest option's tokens and EOS (its targets
    are option texts, so a longer generation is cut where parse_choice still reads an option from
    its start); else max_new_tokens."""
    if not continuations:
      return self.sampling.max_new_tokens
    return min(self.sampling.max_new_tokens, max(map(len, continuations)))

  def option_probabilities(self, params, n: int, feature_at,
                           continuations: Sequence[Sequence[int]]) -> np.ndarray:
    """Normalised likelihood of each option as the answer: [n, num_options] (see option_scores)."""
    return scipy.special.softmax(self.option_scores(params, n, feature_at, continuations), axis=1)

  def option_scores(self, params, n: int, feature_at, continuations: Sequence[Sequence[int]]) -> np.ndarray:
    """Log-likelihood of each option as the answer [n, num_options], where `feature_at(i)`
    preprocesses example i and `continuations` are the options' target ids (EOS last). Each
    batch's prompts run once; every option is then teacher-forced through their KV cache."""
    tokens, masks = self._option_arrays(continuations)

    def scores(batch):
      cache, last = self._prefill(params, batch, tokens.shape[1])
      return np.stack([np.asarray(self._score_option(params, cache, last, batch["prompt_length"],
                                                     batch["dropped"], tokens[k], masks[k]))
                       for k in range(len(continuations))], axis=1)

    return np.concatenate(self._map_batches(scores, n, feature_at))[:n]

  def _option_arrays(self, continuations: Sequence[Sequence[int]], *,
                     pad_options_to: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Option token ids and masks [K, W]: W a power of two (tasks with options of similar lengths
    share compiled programs), K rounded up to a multiple of `pad_options_to` with empty options."""
    width = _continuation_width(max(map(len, continuations)), self.spec.max_target_tokens + 1)
    count = -(-len(continuations) // pad_options_to) * pad_options_to
    tokens = np.full((count, width), tok.PAD_ID, np.int32)
    masks = np.zeros((count, width), np.bool_)
    for k, ids in enumerate(continuations):
      tokens[k, :len(ids)], masks[k, :len(ids)] = ids, True
    return tokens, masks

  def decode_and_option_probabilities(self, params, n: int, feature_at,
                                      continuations: Sequence[Sequence[int]]) -> tuple[list[list[int]], np.ndarray]:
    """`_decode_rows` with the task's decode limit and `option_probabilities`, from one prefill
    of each batch (greedy decoding; a beam search decodes apart)."""
    # Up to 8 options share one program: the option count is traced, only the padding is not.
    tokens, masks = self._option_arrays(continuations, pad_options_to=_OPTIONS_PER_PROGRAM)
    limit, count = np.int32(self.decode_limit(continuations)), np.int32(len(continuations))
    outputs = self._map_batches(lambda batch: self._decode_and_score(params, batch, limit, tokens, masks, count),
                                n, feature_at)
    new_tokens = np.concatenate([o[0] for o in outputs])[:n].tolist()
    scores = np.concatenate([o[1] for o in outputs])[:n, :len(continuations)]
    return new_tokens, scipy.special.softmax(scores, axis=1)

  def evaluate_task(self, params, task: tasks_lib.Task, data_dir: str, split: str,
                    task_ids: dict[str, int]) -> tuple[dict[str, Any] | None, list[dict]]:
    """The task's result and per-example records, on process 0 (None and [] elsewhere)."""
    preprocessor = preprocess.Preprocessor(self.tokenizer, self.spec, task_ids)
    examples = pipeline.eval_examples(task, data_dir, split, max_examples=self.cfg.eval.max_examples_per_task,
                                      seed=self.cfg.seed)
    n = len(examples)
    read = _ExampleReader(examples, preprocessor)
    # The options as the model is trained to answer them ("Yes."), EOS last: what option scoring
    # scores and what bounds the decode length.
    continuations = ([preprocessor.target_ids(option)[0] for option in task.option_targets()]
                     if task.options else [])
    probs = None
    if task.options and "macro_auc" in task.metrics and self.beam_width == 1:
      generated, probs = self.decode_and_option_probabilities(params, n, read.features, continuations)
    else:
      generated = self._decode_rows(params, n, read.features, self.decode_limit(continuations))
      if task.options and "macro_auc" in task.metrics:
        probs = self.option_probabilities(params, n, read.features, continuations)
    # Each process read only the examples its rows needed; process 0 scores them all.
    gathered = {}
    for share in runtime_lib.gather_from_processes(read.summaries()):
      gathered.update({int(i): summary for i, summary in share.items()})
    if jax.process_index() != 0:
      return None, []
    missing = sorted(set(range(n)) - set(gathered))
    if missing:
      raise AssertionError(f"{task.name}: no process read examples {missing[:10]}")
    examples = [gathered[i]["example"] for i in range(n)]
    predictions = [task.postprocess(self.tokenizer.decode(ids)) for ids in generated]
    targets = [ex["target"] for ex in examples]
    counts = {k: sum(gathered[i][k] for i in range(n))
              for k in ("prompt_truncated", "target_truncated", "dropped")}
    result = scoring.score_grouped(task, examples, predictions, targets, probs, self.cfg,
                                   scoring.split_truth(task, data_dir, split, n))
    result.update({"n": n, **{k: v for k, v in counts.items() if v}})
    unparseable = scoring.unparseable(task, examples, predictions)
    if unparseable or task.chain_of_thought:  # already scored wrong; this says how many
      result["unparseable"] = unparseable
    if self.cfg.eval.bootstrap:
      result["margin_ci95"] = scoring.bootstrap_margin(task, examples, predictions, targets, probs,
                                                       self.cfg, self.cfg.eval.bootstrap,
                                                       seed=self.cfg.seed)
    records = [{"id": ex["id"], "prompt": ex["prompt"], "target": t, "prediction": p}
               for ex, t, p in zip(examples, targets, predictions)]
    return result, records


class _ExampleReader:
  """Reads and preprocesses the examples this process's rows need, once each, and keeps what
  scoring needs of them (everything but the images) for process 0."""

  def __init__(self, examples, preprocessor: preprocess.Preprocessor):
    self.examples, self.preprocessor = examples, preprocessor
    self._example: dict[int, dict] = {}
    self._summary: dict[int, dict] = {}

  def example(self, index: int) -> dict:
    if index not in self._example:
      self._example = {index: self.examples[index]}  # rows arrive in order: keep one
    return self._example[index]

  def features(self, index: int) -> dict:
    example = self.example(index)
    features = self.preprocessor(example)
    self._summary[index] = {"example": _without_images(example),
                            **{k: int(bool(features[k]))
                               for k in ("prompt_truncated", "target_truncated", "dropped")}}
    return features

  def summaries(self) -> dict[int, dict]:
    return self._summary


_OPTIONS_PER_PROGRAM = 8


def _continuation_width(longest: int, cap: int) -> int:
  """Cache slots after the prompt for option scoring: the longest option's, rounded up to a power
  of two (at least 8) so that tasks with options of similar lengths share compiled programs."""
  return min(max(8, 1 << (longest - 1).bit_length()), cap)


def _without_images(example: dict) -> dict:
  """The example's fields that scoring reads, as JSON can carry them between processes."""
  return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in example.items() if k != "images"}


def suite_evaluator(runtime: runtime_lib.Runtime, tokenizer: tok.Tokenizer, suite: suites.Suite) -> Evaluator:
  """An Evaluator with the suite's decode settings and sequence layout."""
  return Evaluator(runtime, tokenizer, spec=suite.sequence_spec(runtime.spec),
                   sampling=decode.SamplingConfig(max_new_tokens=suite.max_decode_tokens))


def evaluate(cfg, workdir: str, *, step: int | None = None, task_names: Sequence[str] | None = None,
             split: str | None = None, suite: str | None = None, params=None,
             runtime: runtime_lib.Runtime | None = None,
             evaluator: Evaluator | None = None) -> dict[str, Any] | None:
  """Evaluate `params` (default: the workdir's checkpoint `step`, else its latest) on every task
  of the mixture, or of the named `suite` of config.evals (or `task_names`). Every process takes
  part; process 0 writes the report and returns it, the others return None."""
  workdir = os.path.abspath(workdir)
  plan = suites.named_suite(cfg, suite) if suite else suites.mixture_suite(cfg)
  split = split or plan.split
  task_names = list(task_names or plan.tasks)
  for name in task_names:
    tasks_lib.get(name)  # an unknown task is named before anything is built or restored
  data_dir, tokenizer = runtime_lib.prepare_data(cfg)
  runtime = runtime or runtime_lib.Runtime(cfg)
  if params is None:
    params, step = runtime.restore_params(workdir, step)
  elif step is None:
    raise ValueError("evaluate(params=...) needs the step the parameters come from")
  task_ids = pipeline.task_ids(task_names)
  evaluator = evaluator or suite_evaluator(runtime, tokenizer, plan)
  results, start = {}, time.perf_counter()
  for name in task_names:
    task = tasks_lib.get(name)
    t0 = time.perf_counter()
    result, records = evaluator.evaluate_task(params, task, data_dir, split, task_ids)
    if result is None:  # another process scores
      continue
    results[name] = result
    logging.info("evaluated %s (%d examples) in %.1fs", name, result["n"], time.perf_counter() - t0)
    if cfg.eval.write_predictions:
      directory = os.path.join(plan.directory(workdir), f"predictions_step_{step}")
      os.makedirs(directory, exist_ok=True)
      with open(os.path.join(directory, f"{name}.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
  if jax.process_index() != 0:
    return None
  report = {"step": int(step), "split": split, "wall_time_sec": time.perf_counter() - start,
            "runtime": runtime.describe(), "tasks": results, **({"suite": plan.name} if plan.name else {})}
  return report_lib.write_report(report, plan.report_path(workdir, step, split))
