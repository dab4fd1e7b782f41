"""Every config key and its one default. Each experiment (tiny.py, the paper sizes, fine-tuning
from open weights) starts from `get_config()` here and overrides only what it changes; the code
reads every key without a fallback, so a key exists here or nowhere.

`model` is the schema of `medpalm_m.model.medpalm.ModelConfig`: every field with its dataclass
default; the shapes (widths, depths, heads, vocabulary) have none and each experiment sets them.
"""

import dataclasses
import typing

import ml_collections

from medpalm_m.model.decoder import DecoderConfig
from medpalm_m.model.lora import LoRAConfig
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.vit import ViTConfig


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A workdir whose latest checkpoint's parameters start the run (an imported open model or
  # another run), read once when the run's own workdir has no checkpoint; empty: from scratch.
  c.init_from = ""
  # Regex of parameter paths that start from this config's seeded initialisation instead of
  # init_from's checkpoint (a new adapter grafted onto a trained ViT and decoder); '': none.
  c.init_from_fresh = ""
  # What `medpalm_m.plan` checks by default (e.g. "v5p-64", "2x8xH100"); empty: pass --topology.
  c.topology = ""
  c.model = model_schema()
  c.data = dict(
      mixture={},  # {task: weight}; weights are normalised
      data_dir="~/.cache/medpalm_m/tensorflow_datasets",
      tokenizer="",  # empty: the synthetic benchmark's own SentencePiece model in data_dir
      # How images and prompts reach the model (medpalm_m.data.preprocess). medpalm_m's own: images
      # keep their aspect ratio with zero padding, prompts are [BOS] text with image slots in place.
      # `convert import` writes the checkpoint's own processor's instead (PaliGemma: stretched,
      # bicubic, [BOS] after the images and "\n" closing the prompt; Gemma 3: stretched, bilinear,
      # each image wrapped in "\n\n<start_of_image>" ... "<end_of_image>\n\n").
      image_resize="pad",  # "pad" or "stretch" (to the square, whatever the aspect ratio)
      image_resample="bilinear",  # PIL filter: "bilinear" or "bicubic"
      prompt_layout=dict(bos_after_images=False, image_open="", image_close="", prompt_end=""),
      # `generate --chat`: the checkpoint's chat template (a Jinja file; import copies the -it
      # models'); empty: the model has none. Ids besides EOS that end an answer (Gemma's
      # <end_of_turn>, from the checkpoint's generation_config.json).
      chat_template="",
      stop_token_ids=[],
      build_synthetic=True,  # build MultiMedBench-mini on first use when a synthetic task is missing
      # Task -> folder of its manual download, built into data_dir on first use; empty: already
      # prepared there (or synthetic).
      manual_dirs={},
      skip_malformed=False,  # skip and count malformed records of a real download instead of stopping
      # Options of a real task's dataset, {task: {option: value}}, used when it is built from its
      # manual dir (e.g. {"precision_fda": {"train_fraction": 1.0}} for a partial download,
      # {"slake": {"english_only": True}}); `python -m medpalm_m.data list` names each task's.
      builder_options={},
      max_prompt_tokens=224,  # text and image slots together; paper: 710
      max_target_tokens=32,  # paper: 256
      max_images=1,  # paper: at most one image per training context
      num_workers=0,  # grain worker processes; 0 = in the training process
      # Several whole examples per training row (medpalm_m.data.pipeline.Packing).
      packing=dict(enabled=False, images_per_row=2, examples_per_row=8),
      # Every task of the mixture at least once in every batch (the paper's constraint, Table
      # A.1), each task's share rounded to whole examples per batch (pipeline.EveryTaskMix);
      # needs packing off.
      every_task_per_batch=False,
      # Training images augmented per task, seeded per example (medpalm_m.data.augment):
      # ops {task: [operation, ...]}, empty: none; num_ops operations per image at magnitude
      # 0-10 (ours, RandAugment's ImageNet setting: the paper gives neither). Never at evaluation.
      augmentation=dict(ops={}, num_ops=2, magnitude=9.0),
      # A curriculum's opening (medpalm_m.data.pipeline.Opening): the training stream's first
      # `examples` examples come from `mixture` ({task: weight}, tasks of config.data.mixture),
      # the rest from config.data.mixture; 0: none (the paper has none).
      opening=dict(examples=0, mixture={}),
      # {task: {option: copies}}: each training example of a classification task whose answer is
      # `option` appears `copies` times an epoch (medpalm_m.data.pipeline.Upsampling), as the
      # paper up-samples rare classes. Empty: none (the real builders already store the paper's).
      upsample={},
  )
  c.train = dict(
      num_steps=1000,
      batch_size=16,  # examples (rows when packing) over the whole mesh
      grad_accum_steps=1,
      z_loss=1e-4,
      loss_normalization="tokens",  # or "examples" (medpalm_m.model.loss)
      # {task: factor} on the loss of each of its target tokens (1 for a task not named): a task
      # with one-token answers pulls little on a token-averaged gradient, whatever its share of
      # the examples. The paper gives none.
      task_loss_weights={},
      # Positions per row projected onto the vocabulary for the loss (medpalm_m.trainer.state
      # .loss_position_budget): "auto" (the target's length, twice it for packed rows), "all", or
      # a number. Only positions that score a target token carry loss; a batch with a row over the
      # budget projects every position, so the loss is the same whatever the value.
      loss_positions="auto",
      log_every=20,
      checkpoint_every=200,
      keep_checkpoints=2,
      eval_every=0,  # evaluate every N steps with medpalm_m.evaluation; 0: never
      # Comma-separated keys or fnmatch patterns ("optimizer.learning_rate,data.mixture.*") a
      # resume may change from the workdir's config.json; any other change is refused
      # (medpalm_m.trainer.workdir; run length, logging and eval cadence may always change).
      allow_config_changes="",
      # Stop the run, naming the step, and never save its state (medpalm_m.trainer.divergence).
      # Non-finite values and a zero gradient with a positive loss always stop it; 0 disables a limit.
      divergence=dict(
          max_grad_norm=1e6,  # global gradient norm before clipping
          max_param_rms=1e3,  # root mean square of all parameters after the update
          loss_spike_factor=10.0,  # loss above this times its running mean
      ),
  )
  c.optimizer = dict(
      name="adafactor", learning_rate=1e-3, schedule="constant", warmup_steps=0, b1=0.9,
      b2=0.999, weight_decay=0.0, clip_norm=1.0,
      # Regex of parameter paths kept frozen (not differentiated, no optimizer state); the paper
      # fine-tunes everything.
      freeze="",
      lr_multipliers={},  # {regex: factor} on the learning rate of matching parameters
  )
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # one axis may be -1: every remaining device
  c.rules = None  # logical axis -> mesh axes; None: medpalm_m.sharding.DEFAULT_RULES (data + FSDP)
  c.eval = dict(
      split="test",
      max_examples_per_task=ml_collections.FieldReference(None, field_type=int),  # None: every example
      batch_size=16,
      max_decode_tokens=48,
      write_predictions=False,  # per-example predictions are medical text: only when asked
      # Resamples for each metric's 95% paired-bootstrap interval of ours - baseline; 0: none.
      bootstrap=0,
      # Local weights for the model-based report metrics; empty: reported as skipped.
      scorer_paths=dict(chexbert_checkpoint="", chexbert_bert_dir="", radgraph_model_dir=""),
  )
  # Evaluation suites, independent of the training mixture (big_vision's `evals`): name -> a suite
  # from `eval_suite` below. `python -m medpalm_m.evaluate --suite=NAME` runs one and writes
  # eval/NAME/step_N.json; a suite with `every` > 0 also runs every N training steps.
  c.evals = {}
  return c


def eval_suite(tasks, *, max_decode_tokens: int, split: str = "test", every: int = 0,
               max_images: int = 1) -> dict:
  """One suite of `config.evals`: its tasks (any registered, in the mixture or not), split,
  cadence (every N training steps; 0: only when asked) and decode settings (greedy, up to
  max_decode_tokens new tokens; max_images image slots per example, each one beyond
  config.data.max_images adding one image's tokens to the prompt budget, so that a two-image
  prompt keeps the text room of a one-image one)."""
  return dict(tasks=list(tasks), split=split, every=every, max_decode_tokens=max_decode_tokens,
              max_images=max_images)


def model_schema() -> ml_collections.ConfigDict:
  """ModelConfig's fields with their defaults; fields without one are typed placeholders."""
  schema = _fields(ModelConfig, skip=("vit", "decoder", "lora"))
  schema.vit = _fields(ViTConfig)
  schema.decoder = _fields(DecoderConfig)
  schema.lora = _fields(LoRAConfig)  # rank 0: off; configs/medgemma_lora.py turns it on
  return schema


def _fields(cls, skip=()) -> ml_collections.ConfigDict:
  hints = typing.get_type_hints(cls)
  out = ml_collections.ConfigDict()
  for field in dataclasses.fields(cls):
    if field.name in skip:
      continue
    if field.default is not dataclasses.MISSING:
      value = field.default
      if value is None:
        value = ml_collections.FieldReference(None, field_type=_optional_type(hints[field.name]))
      out[field.name] = value
    else:
      out[field.name] = ml_collections.FieldReference(None, field_type=hints[field.name])
  return out


def _optional_type(hint) -> type:
  """int for `int | None`, float for `float | None`."""
  return next(t for t in typing.get_args(hint) if t is not type(None))
