"""The data a run trains on, drawn: mixture weights, examples with their images, DeepVariant
pileups channel by channel, and how many tokens prompts and targets take and how often they are cut.
"""

from __future__ import annotations

import collections
import textwrap
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from medpalm_m.data import genomics, pipeline, preprocess
from medpalm_m.data import tasks as tasks_lib
from medpalm_m.data import tokenizer as tok


def plot_mixture(mixture: Mapping[str, float]) -> Figure:
  """Each task's share of the training examples, largest first."""
  names = sorted(mixture, key=lambda t: mixture[t])
  total = sum(mixture.values())
  fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1))
  shares = [100 * mixture[t] / total for t in names]
  ax.barh(names, shares, color="tab:blue")
  for y, share in enumerate(shares):
    ax.text(share, y, f" {share:.1f}%", va="center", fontsize=8)
  ax.set_xlabel("share of training examples (%)")
  ax.set_xlim(0, max(shares) * 1.2)
  ax.set_title(f"mixture of {len(names)} tasks")
  fig.tight_layout()
  return fig


def model_view(image: np.ndarray, spec: preprocess.SequenceSpec) -> np.ndarray:
  """An example's image as the model receives it: RGB, resized to a square as the model's config
  says (padded, or stretched for an imported checkpoint)."""
  return spec.model_image(image)


def plot_examples(examples: Sequence[Mapping[str, Any]], spec: preprocess.SequenceSpec,
                  max_chars: int = 700) -> Figure:
  """One row per example: its image(s) as the model sees them, then task, prompt and target."""
  max_images = max([len(ex["images"]) for ex in examples] + [1])
  fig, axes = plt.subplots(len(examples), max_images + 1, squeeze=False,
                           figsize=(3 * max_images + 9, 2.6 * len(examples)),
                           gridspec_kw={"width_ratios": [1] * max_images + [3.5]})
  for row, example in zip(axes, examples):
    for k, ax in enumerate(row[:-1]):
      ax.set_xticks([])
      ax.set_yticks([])
      if k < len(example["images"]):
        image = np.asarray(example["images"][k])
        ax.imshow(model_view(image, spec))
        ax.set_xlabel(f"model input {spec.image_size}x{spec.image_size} "
                      f"(stored {image.shape[1]}x{image.shape[0]})", fontsize=7)
      else:
        ax.axis("off")
        if k == 0:
          ax.text(0.5, 0.5, "text only", ha="center", va="center", color="gray")
    prompt = example["prompt"]
    if len(prompt) > max_chars:
      prompt = "..." + prompt[-max_chars:]  # the end holds the question, as truncation keeps it
    text = (f"{example['task']}  ({example['id']})\n\nPROMPT: " + textwrap.fill(prompt, 110)
            + "\n\nTARGET: " + textwrap.fill(example["target"], 110))
    row[-1].axis("off")
    row[-1].text(0, 1, text, va="top", ha="left", fontsize=7, family="monospace")
  fig.tight_layout()
  return fig


def pileup_tasks(mixture: Mapping[str, float]) -> list[str]:
  """Tasks of the mixture whose images are DeepVariant pileups (the genomics task)."""
  return sorted(t for t in mixture if tasks_lib.get(t).paper_task == "PrecisionFDA")


def first_image_example(mixture: Mapping[str, float], data_dir: str, split: str = "test",
                        seed: int = 0) -> dict[str, Any]:
  """The first `split` example, with an image, of a task in the mixture; VQA tasks first, since
  their short answers are about the image."""
  names = sorted(mixture, key=lambda t: ("VQA" not in (tasks_lib.get(t).paper_task or ""), t))
  for name in names:
    example = pipeline.eval_examples(tasks_lib.get(name), data_dir, split, max_examples=1, seed=seed)[0]
    if example["images"]:
      return example
  raise ValueError(f"no task of the mixture {sorted(mixture)} has images")


def pileup_channels(rgb: np.ndarray) -> np.ndarray:
  """The 6-channel pileup [100, 221, 6] behind Med-PaLM M's RGB image of it: the inverse of
  `genomics.pileup_to_rgb`, which stacks channels 1-3 above channels 4-6 (nothing is lost)."""
  rgb = np.asarray(rgb)
  expected = (genomics.RGB_IMAGE_SIZE, genomics.RGB_IMAGE_SIZE, 3)
  if rgb.shape != expected:
    raise ValueError(f"a pileup RGB image has shape {expected}, got {rgb.shape}; pass the image "
                     "of a genomics example as stored, before any resizing")
  h, w = genomics.PILEUP_HEIGHT, genomics.PILEUP_WIDTH
  return np.concatenate([rgb[:h, :w], rgb[h:2 * h, :w]], axis=-1)


def plot_pileup(rgb: np.ndarray, title: str = "") -> Figure:
  """A pileup's six channels (reads as rows, the candidate in the centre column) beside the RGB
  image the model sees."""
  channels = pileup_channels(rgb)
  fig = plt.figure(figsize=(15, 4.6))
  grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.05])
  for c, name in enumerate(genomics.CHANNEL_NAMES):
    ax = fig.add_subplot(grid[c // 3, c % 3])
    ax.imshow(channels[..., c], cmap="gray", vmin=0, vmax=255, aspect="auto", interpolation="nearest")
    ax.axvline(genomics.PILEUP_WIDTH // 2, color="tab:red", lw=0.6, alpha=0.6)
    ax.set_title(f"channel {c + 1}: {name}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  ax = fig.add_subplot(grid[:, 3])
  ax.imshow(rgb, interpolation="nearest")
  ax.set_title("the RGB image the model is given\n(channels 1-3 above 4-6, zero-padded)", fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def token_statistics(examples: Sequence[Mapping[str, Any]], tokenizer: tok.Tokenizer,
                     spec: preprocess.SequenceSpec) -> list[dict[str, Any]]:
  """Per example: prompt text tokens, image slots, target tokens (EOS included), all before any
  cut, and the preprocessor's own truncation and drop flags for this sequence layout."""
  preprocessor = preprocess.Preprocessor(tokenizer, spec, {t: 0 for t in {ex["task"] for ex in examples}})
  rows = []
  for example in examples:
    prompt_ids, _, _ = spec.prompt_layout.prompt_ids(tokenizer, example["prompt"], spec.image_slots)
    image_slots = sum(i == tok.IMAGE_ID for i in prompt_ids)
    features = preprocessor(example)
    rows.append({
        "task": example["task"], "id": example["id"],
        "prompt_text_tokens": len(prompt_ids) - image_slots, "image_tokens": image_slots,
        "target_tokens": len(tokenizer.encode(example["target"])) + 1,
        "prompt_truncated": bool(features["prompt_truncated"]),
        "target_truncated": bool(features["target_truncated"]), "dropped": bool(features["dropped"]),
    })
  return rows


def truncation_table(stats: Sequence[Mapping[str, Any]], spec: preprocess.SequenceSpec) -> str:
  """Per task: token counts (median / max) and how many examples lose tokens to fit the layout."""
  by_task: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
  for row in stats:
    by_task[row["task"]].append(row)
  header = ["task", "n", "prompt tokens med/max", "image tokens", "target tokens med/max",
            "prompt cut", "target cut", "dropped"]
  lines = []
  for task, rows in sorted(by_task.items()):
    prompt = [r["prompt_text_tokens"] + r["image_tokens"] for r in rows]
    target = [r["target_tokens"] for r in rows]
    lines.append([task, str(len(rows)), f"{np.median(prompt):.0f}/{max(prompt)}",
                  str(max(r["image_tokens"] for r in rows)), f"{np.median(target):.0f}/{max(target)}",
                  *(str(sum(r[k] for r in rows)) for k in ("prompt_truncated", "target_truncated", "dropped"))])
  widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
  fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
  return "\n".join([f"layout: {spec.max_prompt_tokens} prompt tokens (text and image slots), "
                    f"{spec.max_target_tokens} target tokens + EOS",
                    fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines])


def plot_token_counts(stats: Sequence[Mapping[str, Any]], spec: preprocess.SequenceSpec) -> Figure:
  """Prompt and target lengths per task against the limits of the sequence layout."""
  tasks = sorted({r["task"] for r in stats})
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(tasks) + 1.8), sharey=True)
  for ax, key, limit, label in (
      (left, "prompt", spec.max_prompt_tokens, "prompt tokens (text + image slots)"),
      (right, "target", spec.max_target_tokens + 1, "target tokens (+ EOS)")):
    values = [[(r["prompt_text_tokens"] + r["image_tokens"]) if key == "prompt" else r["target_tokens"]
               for r in stats if r["task"] == t] for t in tasks]
    ax.boxplot(values, orientation="horizontal", tick_labels=tasks, widths=0.6)
    ax.axvline(limit, color="tab:red", ls="--", label=f"limit {limit}")
    ax.set_xlabel(label)
    ax.legend(loc="lower right", fontsize=8)
  right.tick_params(labelleft=False)
  fig.suptitle(f"token counts of {len(stats)} examples (beyond the red line they are cut)")
  fig.tight_layout()
  return fig


def training_truncation(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
  """Totals over a run's metrics.jsonl: each record counts the examples cut since the last one."""
  totals: dict[str, dict[str, int]] = {}
  for key in ("truncated_prompts", "truncated_targets", "dropped_examples"):
    counts: collections.Counter[str] = collections.Counter()
    for record in records:
      counts.update(record.get(key, {}))
    totals[key] = dict(sorted(counts.items()))
  return totals
