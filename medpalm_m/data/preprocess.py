"""Examples -> fixed-shape model inputs: images, tokens and the three masks.

An example is `{id, task, images: list of HxWx{1,3} uint8, prompt: str with <img>, target: str}`.
Every sequence has the static layout `[BOS] prompt [target EOS] pad...` of length
`1 + max_prompt_tokens + max_target_tokens + 1`, and every batch `max_images` image slots, so
the compiled step never sees a new shape. Nothing is cut silently: each example's features
carry `prompt_truncated`, `target_truncated` and `dropped` flags, which the trainer and the
evaluator add up per task (flags travel with the batch, so the counts stay exact with worker
processes and several hosts).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
from PIL import Image

from medpalm_m.data import tokenizer as tok


class ExampleError(ValueError):
  """Bad input, with the task and example it came from in the message."""

  def __init__(self, example: Mapping[str, Any], message: str):
    super().__init__(f"task {example.get('task', '?')!r}, example {example.get('id', '?')!r}: {message}")


def to_rgb(image: np.ndarray, example: Mapping[str, Any] | None = None) -> np.ndarray:
  """HxW, HxWx1, HxWx3 or HxWx4 uint8 -> HxWx3 uint8 (grayscale stacked, alpha dropped)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ExampleError(example or {}, f"image dtype is {image.dtype}, expected uint8")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
    raise ExampleError(example or {}, f"image shape {image.shape} is not HxW, HxWx1, HxWx3 or HxWx4")
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image[..., :3]


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
  """Aspect-preserving resize so the longer side is `size`, then centred zero padding to size x size."""
  h, w = image.shape[:2]
  if (h, w) == (size, size):
    return image
  scale = size / max(h, w)
  new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
  resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
  out = np.zeros((size, size, 3), np.uint8)
  top, left = (size - new_h) // 2, (size - new_w) // 2
  out[top:top + new_h, left:left + new_w] = resized
  return out


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
  max_prompt_tokens: int
  max_target_tokens: int
  max_images: int
  image_size: int
  image_slots: int  # tokens per image = the ViT's patch count

  @property
  def length(self) -> int:
    return 1 + self.max_prompt_tokens + self.max_target_tokens + 1


class Preprocessor:
  """Turns examples into fixed-shape model features."""

  def __init__(self, tokenizer: tok.Tokenizer, spec: SequenceSpec, task_ids: Mapping[str, int]):
    self.tokenizer, self.spec, self.task_ids = tokenizer, spec, dict(task_ids)

  def target_ids(self, target: str) -> tuple[list[int], bool]:
    """The target's token ids as a sequence holds them (EOS last, cut to max_target_tokens + 1),
    and whether they were cut."""
    ids = self.tokenizer.encode(target) + [tok.EOS_ID]
    limit = self.spec.max_target_tokens + 1
    return ids[:limit], len(ids) > limit

  def __call__(self, example: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Features of one example. One that cannot fit keeps its batch slot with empty masks and
    `dropped` set, so it is counted and never trained on."""
    spec, task = self.spec, example["task"]
    if task not in self.task_ids:
      raise ExampleError(example, f"unknown task; known: {sorted(self.task_ids)}")
    images = list(example.get("images", []))
    prompt_ids, num_markers = self.tokenizer.encode_prompt(example["prompt"], spec.image_slots)
    if num_markers != len(images):
      raise ExampleError(example, f"the prompt has {num_markers} <img> marker(s) but {len(images)} "
                         "image(s) were given; each image needs exactly one <img> in the prompt "
                         "(write \\<img> for the literal text)")
    if len(images) > spec.max_images:
      raise ExampleError(example, f"{len(images)} images exceed config.data.max_images="
                         f"{spec.max_images}")
    prompt_truncated = dropped = False
    if len(prompt_ids) > spec.max_prompt_tokens:
      # Keep the end of the prompt (the question the target answers); an image cut in part would
      # desynchronise slots and images, so such an example is dropped instead.
      cut = len(prompt_ids) - spec.max_prompt_tokens
      dropped = tok.IMAGE_ID in prompt_ids[:cut]
      prompt_ids = [] if dropped else prompt_ids[cut:]
      prompt_truncated = not dropped
    target_ids, target_truncated = ([], False) if dropped else self.target_ids(example["target"])

    prefix = [tok.BOS_ID] + prompt_ids
    ids = prefix + target_ids
    length = spec.length
    tokens = np.full(length, tok.PAD_ID, np.int32)
    tokens[: len(ids)] = ids
    input_mask = np.zeros(length, np.bool_)
    input_mask[: len(ids)] = True
    mask_ar = np.zeros(length, np.int32)
    mask_ar[len(prefix):] = 1
    mask_loss = np.zeros(length, np.bool_)
    mask_loss[len(prefix): len(ids)] = True

    if dropped:
      input_mask[:] = False
      mask_loss[:] = False
      images = []
    pixels = np.zeros((spec.max_images, spec.image_size, spec.image_size, 3), np.uint8)
    for k, image in enumerate(images):
      pixels[k] = resize_with_pad(to_rgb(image, example), spec.image_size)
    return {
        "tokens": tokens, "input_mask": input_mask, "mask_ar": mask_ar, "mask_loss": mask_loss,
        "images": pixels, "task_id": np.int32(self.task_ids[task]),
        "prompt_length": np.int32(len(prefix)),
        "prompt_truncated": np.bool_(prompt_truncated),
        "target_truncated": np.bool_(target_truncated), "dropped": np.bool_(dropped),
    }


def collate(features: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([f[k] for f in features]) for k in features[0]}
