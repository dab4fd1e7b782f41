"""Examples -> fixed-shape model inputs: images, tokens and the three masks.

An example is `{id, task, images: list of HxWx{1,3} uint8, prompt: str with <img>, target: str}`.
Every sequence has the static layout `[BOS] prompt [target EOS] pad...` of length
`1 + max_prompt_tokens + max_target_tokens + 1`, and every batch `max_images` image slots, so
the compiled step never sees a new shape.

Models trained here see images resized with their aspect ratio kept and zero padding, and the
prompt as `[BOS] text <img slots> text`. An imported checkpoint was trained on its processor's
inputs instead (PaliGemma: images stretched to the square with a bicubic filter, `<image slots>
[BOS] text \n`; Gemma 3: stretched bilinearly, each image as `\n\n<start_of_image> slots
<end_of_image>\n\n`): `SequenceSpec.image_resize`, `image_resample` and `prompt_layout` say
which, from the workdir's config.data, which `convert import` fills in.

Nothing is cut silently: each example's features carry `prompt_truncated`, `target_truncated`
and `dropped` flags, which the trainer and the evaluator add up per task (flags travel with the
batch, so the counts stay exact with worker processes and several hosts).
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


# PIL's filters by the names configs use (config.data.image_resample).
RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
# config.data.image_resize: "pad" keeps the aspect ratio (medpalm_m's), "stretch" fills the square
# (PaliGemma's and Gemma 3's processors).
IMAGE_RESIZE = ("pad", "stretch")


def resize_with_pad(image: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
  """Aspect-preserving resize so the longer side is `size`, then centred zero padding to size x size."""
  h, w = image.shape[:2]
  if (h, w) == (size, size):
    return image
  scale = size / max(h, w)
  new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
  resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), RESAMPLE[resample]))
  out = np.zeros((size, size, 3), np.uint8)
  top, left = (size - new_h) // 2, (size - new_w) // 2
  out[top:top + new_h, left:left + new_w] = resized
  return out


def stretch(image: np.ndarray, size: int, resample: str) -> np.ndarray:
  """Resize to size x size whatever the aspect ratio: PIL's filter on uint8, as the PaliGemma
  and Gemma 3 processors resize (their PIL backend gives the same pixels)."""
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), RESAMPLE[resample]))


@dataclasses.dataclass(frozen=True)
class PromptLayout:
  """Where [BOS] and the text around images go in a prompt (config.data.prompt_layout). The
  default is medpalm_m's own: [BOS], then the prompt with each image's slots at its marker."""
  bos_after_images: bool = False  # PaliGemma: [BOS] after the last image's slots
  image_open: str = ""  # text before each image's slots (Gemma 3: "\n\n<start_of_image>")
  image_close: str = ""  # and after them (Gemma 3: "<end_of_image>\n\n")
  prompt_end: str = ""  # text closing the prompt (PaliGemma: "\n", before the answer)

  def prompt_ids(self, tokenizer: tok.Tokenizer, prompt: str, image_slots: int
                 ) -> tuple[list[int], int, int]:
    """(the prompt's ids without [BOS], where [BOS] goes among them, the number of images)."""
    ids, images = tokenizer.encode_prompt(prompt, image_slots, image_open=self.image_open,
                                          image_close=self.image_close, end=self.prompt_end)
    bos_at = 0
    if self.bos_after_images and images:
      bos_at = len(ids) - ids[::-1].index(tok.IMAGE_ID)
    return ids, bos_at, images


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
  max_prompt_tokens: int
  max_target_tokens: int
  max_images: int
  image_size: int
  image_slots: int  # tokens per image = the ViT's patch count
  image_resize: str = "pad"  # one of IMAGE_RESIZE
  image_resample: str = "bilinear"  # a key of RESAMPLE
  prompt_layout: PromptLayout = PromptLayout()

  def __post_init__(self):
    if self.image_resize not in IMAGE_RESIZE:
      raise ValueError(f"config.data.image_resize is {self.image_resize!r}; use one of {IMAGE_RESIZE}")
    if self.image_resample not in RESAMPLE:
      raise ValueError(f"config.data.image_resample is {self.image_resample!r}; use one of "
                       f"{sorted(RESAMPLE)}")

  @property
  def length(self) -> int:
    return 1 + self.max_prompt_tokens + self.max_target_tokens + 1

  def model_image(self, image: np.ndarray, example: Mapping[str, Any] | None = None) -> np.ndarray:
    """size x size x 3 uint8 pixels of one image, resized as this model was trained to see them."""
    image = to_rgb(image, example)
    if self.image_resize == "stretch":
      return stretch(image, self.image_size, self.image_resample)
    return resize_with_pad(image, self.image_size, self.image_resample)


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
    prompt_ids, bos_at, num_markers = spec.prompt_layout.prompt_ids(self.tokenizer, example["prompt"],
                                                                    spec.image_slots)
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
      # [BOS] after the images (PaliGemma) keeps its place as the front is cut; a cut reaching
      # it would cut an image, and drops the example.
      bos_at = 0 if dropped else max(0, bos_at - cut)
      prompt_truncated = not dropped
    target_ids, target_truncated = ([], False) if dropped else self.target_ids(example["target"])

    prefix = prompt_ids[:bos_at] + [tok.BOS_ID] + prompt_ids[bos_at:]
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
      pixels[k] = spec.model_image(image, example)
    return {
        "tokens": tokens, "input_mask": input_mask, "mask_ar": mask_ar, "mask_loss": mask_loss,
        "images": pixels, "task_id": np.int32(self.task_ids[task]),
        "prompt_length": np.int32(len(prefix)),
        "prompt_truncated": np.bool_(prompt_truncated),
        "target_truncated": np.bool_(target_truncated), "dropped": np.bool_(dropped),
    }


def collate(features: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([f[k] for f in features]) for k in features[0]}
