"""What the model answers and where it looks meanwhile: the probability of each answer token and
the attention from answer tokens to image patches.

`inspect_answer` loads a checkpoint once, decodes greedily with the evaluator's compiled decoder,
then runs prompt and answer through the model in one teacher-forced pass (the computation the
cached decoder does step by step, so its probabilities are the decoder's) with the decoder's
opt-in attention capture on (`Attention.capture_attention`, sown into `nnx.Intermediate`).
Answer token i is chosen by the output at the position before it, so its row of attention is that
position's: where the model looked to choose that token.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from medpalm_m.data import preprocess
from medpalm_m.evaluation import Evaluator
from medpalm_m.data import tokenizer as tok
from medpalm_m.inspection.workdir import Workdir
from medpalm_m.model.template import ModelTemplate
from medpalm_m.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class AnswerAttention:
  answer: str
  pieces: list[str]  # SentencePiece pieces of the answer, a final "</s>" when it ended with EOS
  token_ids: list[int]
  token_probs: np.ndarray  # [n] the model's probability of each answer token
  argmax_ids: list[int]  # [n] the most likely token at each answer position (greedy = token_ids)
  to_images: np.ndarray  # [layers, heads, n, images, grid, grid] attention on each image patch
  images: np.ndarray  # [images, size, size, 3] as the model sees them
  step: int

  @property
  def image_share(self) -> np.ndarray:
    """[layers, heads, n] the part of each attention row spent on image patches (the rest is text)."""
    return self.to_images.sum(axis=(-3, -2, -1))


def _layer_index(path: tuple) -> int:
  return int(path[path.index("blocks") + 1])


def _forward_capturing_attention(template: ModelTemplate, params, tokens, images, input_mask, mask_ar):
  model = template.bind(params)
  model.set_attributes(capture_attention=True)
  logits, intermediates = nnx.capture(model, nnx.Intermediate)(tokens, images, input_mask, mask_ar)
  sown = sorted(nnx.to_flat_state(intermediates), key=lambda item: _layer_index(item[0]))
  # One call per layer sows one [B, kv_heads, groups, T, S] array; heads are (kv_head, group).
  weights = jnp.stack([v.get_value()[0] for _, v in sown])
  layers, b, kv, groups, t, s = weights.shape
  return logits, weights.reshape(layers, b, kv * groups, t, s)


_forward = jax.jit(_forward_capturing_attention, static_argnums=0)


def inspect_answer(workdir: Workdir, prompt: str, images: Sequence[np.ndarray], *,
                   step: int | None = None, answer_ids: Sequence[int] | None = None) -> AnswerAttention:
  """The checkpoint's answer to `prompt` (one `<img>` per image), each answer token's probability,
  and the attention of each answer position on every image patch.

  The answer is the greedy one of the evaluator's compiled decoder (what the benchmark scores,
  up to config.eval.max_decode_tokens, with the EOS that ended it), unless `answer_ids` gives one
  to score instead. `step` defaults to the latest checkpoint.
  """
  cfg = workdir.config.copy_and_resolve_references()
  cfg.eval.batch_size = 1  # one question: no padding copies to decode
  # Inference never needs rematerialisation, and values sown inside nnx.remat do not come out.
  cfg.model.decoder.remat = "none"
  if cfg.model.adapter == "attention_pooler":
    raise ValueError(f"{workdir.path}: config.model.adapter='attention_pooler' gives the decoder "
                     "learned query tokens, not image patches; attention over patches needs the "
                     "'affine' or 'mlp' adapter")
  tokenizer = workdir.tokenizer()
  runtime = Runtime(cfg)
  params, step = runtime.restore_params(workdir.path, step)
  spec = runtime.spec
  example = {"id": "inspect", "task": "inspect", "prompt": prompt, "target": "", "images": list(images)}
  features = preprocess.Preprocessor(tokenizer, spec, {"inspect": 0})(example)
  if features["dropped"]:
    raise ValueError(f"the prompt does not fit config.data.max_prompt_tokens={spec.max_prompt_tokens} "
                     "without cutting an image; shorten it")
  if features["prompt_truncated"]:
    warnings.warn(f"the prompt is longer than config.data.max_prompt_tokens={spec.max_prompt_tokens}: "
                  "the model sees only its end", stacklevel=2)
  if answer_ids is None:
    generated = Evaluator(runtime, tokenizer, data_parallel=False).decode(params, [features])[0]
    answer_ids = generated[:generated.index(tok.EOS_ID) + 1] if tok.EOS_ID in generated else generated
  answer_ids = [int(i) for i in answer_ids]
  if not answer_ids:
    raise ValueError("answer_ids is empty: give at least one token (EOS counts)")
  prompt_length = int(features["prompt_length"])
  length = prompt_length + len(answer_ids)
  if length > spec.length:
    raise ValueError(f"prompt ({prompt_length} tokens) and answer ({len(answer_ids)}) exceed the "
                     f"sequence length {spec.length} of the config")
  tokens = features["tokens"].copy()
  tokens[prompt_length:] = tok.PAD_ID
  tokens[prompt_length:length] = answer_ids
  input_mask = np.arange(spec.length) < length
  logits, weights = _forward(runtime.template, params, tokens[None], features["images"][None],
                             input_mask[None], features["mask_ar"][None])
  rows = np.arange(prompt_length - 1, length - 1)  # the positions that chose each answer token
  logp = np.asarray(jax.nn.log_softmax(np.asarray(logits)[0, rows], axis=-1))
  slots = np.flatnonzero(tokens[:prompt_length] == tok.IMAGE_ID)
  num_images, grid = len(images), math.isqrt(spec.image_slots)
  to_images = np.asarray(weights)[:, 0][:, :, rows][..., slots]  # [layers, heads, n, slots]
  return AnswerAttention(
      answer=tokenizer.decode(answer_ids), pieces=[tokenizer.piece(i) for i in answer_ids],
      token_ids=answer_ids, token_probs=np.exp(logp[np.arange(len(answer_ids)), answer_ids]),
      argmax_ids=logp.argmax(axis=-1).tolist(),
      to_images=to_images.reshape(*to_images.shape[:3], num_images, grid, grid),
      images=features["images"][:num_images], step=int(step))


def plot_token_probabilities(pieces: Sequence[str], probs: Sequence[float], title: str = "") -> Figure:
  """One bar per answer token: how sure the model was of the token it produced."""
  fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(pieces) + 1.5), 3))
  colors = plt.cm.RdYlGn(np.asarray(probs))
  ax.bar(range(len(pieces)), probs, color=colors, edgecolor="black", lw=0.5)
  ax.set_xticks(range(len(pieces)), pieces, rotation=45 if len(pieces) > 6 else 0, ha="right")
  ax.set_ylim(0, 1)
  ax.set_ylabel("probability")
  ax.set_title(title or "probability of each answer token")
  fig.tight_layout()
  return fig


def _overlay(ax, image: np.ndarray, heat: np.ndarray, label: str) -> None:
  size = image.shape[0]
  ax.imshow(image)
  ax.imshow(heat, cmap="inferno", alpha=0.55, extent=(0, size, size, 0), interpolation="nearest",
            vmin=0, vmax=max(float(heat.max()), 1e-9))
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title(label, fontsize=8)


def plot_attention(attention: AnswerAttention, image: int = 0, max_tokens: int = 8) -> Figure:
  """Heatmaps over image `image`: one column per answer token, the first row averaged over every
  layer and head, then one row per layer (averaged over its heads). Each panel has its own colour
  scale; its title gives the share of that attention spent on this image's patches."""
  to_image = attention.to_images[:, :, :max_tokens, image]  # [layers, heads, n, grid, grid]
  layers, _, n = to_image.shape[:3]
  share = to_image.sum(axis=(-2, -1))  # [layers, heads, n]
  fig, axes = plt.subplots(layers + 1, n + 1, squeeze=False, figsize=(1.9 * (n + 1), 1.95 * (layers + 1)))
  picture = attention.images[image]
  for r, ax in enumerate(axes[:, 0]):
    ax.imshow(picture)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel("all layers" if r == 0 else f"layer {r - 1}", fontsize=9)
  axes[0, 0].set_title("model input", fontsize=8)
  for i in range(n):
    label = f"{attention.pieces[i]!r} p={attention.token_probs[i]:.2f}"
    _overlay(axes[0, i + 1], picture, to_image[:, :, i].mean(axis=(0, 1)),
             f"{label}\n{100 * share[:, :, i].mean():.0f}% on image")
    for layer in range(layers):
      _overlay(axes[layer + 1, i + 1], picture, to_image[layer, :, i].mean(axis=0),
               f"{100 * share[layer, :, i].mean():.0f}% on image")
  fig.suptitle(f"attention from answer tokens to image patches (step {attention.step})")
  fig.tight_layout()
  return fig
