"""Import then export gives back the checkpoint's bytes; bad checkpoints are refused by name; an
imported checkpoint answers through `medpalm_m.generate`, and a run started from it
(config.init_from) exports back into a checkpoint transformers loads and agrees with."""

import json
import os
import shutil

import jax
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import sentencepiece as spm
import torch
import transformers
from PIL import Image

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m.convert import CheckpointMismatchError, export_checkpoint, import_checkpoint
from medpalm_m.data import tokenizer as tok
from medpalm_m.runtime import write_config
from tests.convert import parity
from tests.convert.conftest import FAMILIES, run_from_elsewhere, small_base_config


def same_files(a: str, b: str) -> list[str]:
  """The file names of folder a, after checking folder b holds the same bytes under each."""
  names = sorted(os.listdir(a))
  assert names == sorted(os.listdir(b))
  for name in names:
    with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
      assert fa.read() == fb.read(), name
  return names


@pytest.mark.parametrize("family", FAMILIES)
def test_import_then_export_gives_back_the_same_bytes(family, checkpoints, tmp_path):
  _, hf_dir, workdir, _ = checkpoints[family]
  export_checkpoint(workdir, str(tmp_path / "exported"))
  assert "model.safetensors" in same_files(hf_dir, str(tmp_path / "exported"))


def run_cli(tmp_path, *args):
  """The convert command, run from outside the repository (its default config imports configs/)."""
  return run_from_elsewhere(tmp_path, "medpalm_m.convert", *args)


def hub_style_bf16_shards(hf_dir: str, out: str) -> None:
  """The checkpoint as the Hub stores Gemma 3: bfloat16, two shards with an index, the vision
  tower under 'vision_tower.vision_model.' (transformers 5 writes 'vision_tower.')."""
  os.makedirs(out)
  tensors = safetensors.numpy.load_file(os.path.join(hf_dir, "model.safetensors"))
  renamed = {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v.astype(ml_dtypes.bfloat16)
             for k, v in tensors.items()}
  text = {k: v for k, v in renamed.items() if k.startswith("language_model")}
  shards = {"model-00001-of-00002.safetensors": text,
            "model-00002-of-00002.safetensors": {k: v for k, v in renamed.items() if k not in text}}
  for name, group in shards.items():
    safetensors.numpy.save_file(group, os.path.join(out, name), metadata={"format": "pt"})
  index = {"metadata": {"total_size": sum(v.nbytes for v in renamed.values())},
           "weight_map": {k: name for name, group in shards.items() for k in sorted(group)}}
  with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
  for name in ("config.json", "tokenizer.model"):
    shutil.copy(os.path.join(hf_dir, name), out)


@pytest.mark.slow
def test_command_line_round_trip_of_hub_style_bf16_shards_and_generate_answers(checkpoints, tmp_path):
  """Import and export on the command line; in between, `medpalm_m.generate` answers from the
  imported workdir with the checkpoint's (rewritten) tokenizer."""
  from medpalm_m import evaluation, runtime
  from medpalm_m.model import decode
  hf_dir = str(tmp_path / "hub")
  hub_style_bf16_shards(checkpoints["gemma3"][1], hf_dir)
  workdir, exported = str(tmp_path / "imported"), str(tmp_path / "exported")
  imported = run_cli(tmp_path, "import", f"--hf_dir={hf_dir}", f"--workdir={workdir}",
                     "--config.data.max_prompt_tokens=32", "--config.data.max_target_tokens=8")
  assert imported.returncode == 0, imported.stderr[-3000:]
  summary = json.loads(imported.stdout)
  assert summary["family"] == "gemma3" and summary["tokenizer_id4_was"] == "<mask>"
  print(f"gemma3 (bf16, 2 shards) import: {summary['convert_seconds']:.2f}s converting, "
        f"{summary['total_seconds']:.2f}s with the orbax checkpoint")
  with open(os.path.join(workdir, "hf_source.json")) as f:
    assert json.load(f)["layout"]["vision"] == "vision_tower.vision_model."
  image = str(tmp_path / "scan.png")
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(image)
  answer = evaluation.answer(runtime.load_config(workdir), workdir, "<img>chest xray shows", [image],
                           sampling=decode.SamplingConfig(max_new_tokens=6))
  assert answer["step"] == 0 and 1 <= len(answer["token_ids"]) <= 6 and isinstance(answer["answer"], str)

  exported_run = run_cli(tmp_path, "export", f"--workdir={workdir}", f"--out={exported}")
  assert exported_run.returncode == 0, exported_run.stderr[-3000:]
  assert len(same_files(hf_dir, exported)) == 5  # 2 shards, index, config.json, tokenizer.model

  # The tokenizer keeps every id; only the special pieces medpalm_m checks are renamed.
  original = spm.SentencePieceProcessor(model_file=os.path.join(hf_dir, "tokenizer.model"))
  ours = tok.Tokenizer(os.path.join(workdir, "tokenizer.model"))
  text = "chest xray shows a left lower lobe opacity<start_of_image>"
  assert ours.encode(text) == original.encode(text) and original.encode(text)[-1] == 5
  assert tok.IMAGE_ID in original.encode("<mask>") and tok.IMAGE_ID not in ours.encode("<mask>")
  assert [ours.sp.id_to_piece(i) for i in range(5)] == ["<pad>", "</s>", "<s>", "<unk>", "<img>"]


def training_batch(tokens, images, mask_ar, mask_loss) -> dict[str, np.ndarray]:
  """A trainer's batch of these examples, every one valid and complete, all of task 0."""
  rows = len(tokens)
  return {"tokens": tokens, "images": images, "input_mask": np.ones(tokens.shape, bool),
          "mask_ar": mask_ar, "mask_loss": mask_loss, "task_id": np.zeros(rows, np.int32),
          "prompt_truncated": np.zeros(rows, bool), "target_truncated": np.zeros(rows, bool),
          "dropped": np.zeros(rows, bool)}


def saved_and_exported(cfg, state, tmp_path) -> str:
  """The train state saved as a run's checkpoint (tmp_path/run) and that run exported (the
  source: its config.init_from); returns the exported folder."""
  run = str(tmp_path / "run")
  writer = ckpt_lib.Checkpointer(os.path.join(run, "checkpoints"), async_save=False)
  writer.save(int(state["step"]), state, None, {"params": ckpt_lib.param_signature(state["params"])},
              force=True)
  writer.close()
  write_config(cfg, run)
  exported = str(tmp_path / "exported")
  export_checkpoint(run, exported)
  return exported


@pytest.mark.slow
def test_a_run_initialised_from_an_import_trains_and_exports_what_transformers_loads(checkpoints,
                                                                                      tmp_path):
  from configs import paligemma_multimedbench
  from medpalm_m.trainer import Trainer
  hf_model, _, imported, _ = checkpoints["paligemma"]
  cfg = paligemma_multimedbench.get_config(imported)  # the fine-tune config, init_from = imported
  cfg.mesh = dict(data=-1, fsdp=1, tensor=1)
  cfg.model.dtype = "float32"
  cfg.model.vit.remat = cfg.model.decoder.remat = "none"  # parity.logits jits a bound module
  cfg.data.update(max_prompt_tokens=24, max_target_tokens=8)
  cfg.train.batch_size = 2
  cfg.optimizer.learning_rate = 1e-2
  trainer = Trainer(cfg, num_tasks=1)
  state = trainer.init_state_from(cfg.init_from)
  start = jax.device_get(state["params"])
  reader = ckpt_lib.Checkpointer(os.path.join(imported, "checkpoints"), async_save=False)
  saved = reader.restore_params(0, {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in start.items()})
  reader.close()
  assert all(np.array_equal(start[k], saved[k]) for k in saved)

  rng = np.random.default_rng(0)
  length = 1 + 24 + 8 + 1
  tokens = rng.integers(5, 298, (2, length)).astype(np.int32)
  tokens[:, 1:5] = tok.IMAGE_ID
  target = np.repeat((np.arange(length) >= 20)[None], 2, axis=0)
  batch = training_batch(tokens, rng.integers(0, 256, (2, 1, 28, 28, 3)).astype(np.uint8),
                         target.astype(np.int32), target)
  state, metrics = trainer.train_step(state, trainer.global_batch(batch))
  assert np.isfinite(float(metrics["loss"]))
  exported = saved_and_exported(cfg, state, tmp_path)
  tuned = transformers.PaliGemmaForConditionalGeneration.from_pretrained(
      exported, attn_implementation="eager").eval()
  changed = {name for name, p in tuned.named_parameters()
             if not torch.equal(p, dict(hf_model.named_parameters())[name])}
  assert len(changed) > 40  # every weight moved in one step of plain Adafactor
  model = trainer.template.bind(jax.device_get(state["params"]))
  tokens, images = batch["tokens"][:, :20], batch["images"]
  mask_ar, ones = np.zeros((2, 20), np.int32), np.ones((2, 20), bool)
  ours, theirs = parity.logits(model, tuned, tokens, images, ones, mask_ar, mask_ar)
  assert np.abs(ours - theirs).max() < 1e-4


@pytest.fixture
def paligemma_copy(checkpoints, tmp_path):
  target = str(tmp_path / "hf")
  shutil.copytree(checkpoints["paligemma"][1], target)
  return target


def rewrite_weights(hf_dir: str, change) -> None:
  path = os.path.join(hf_dir, "model.safetensors")
  tensors = dict(safetensors.numpy.load_file(path))
  change(tensors)
  safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})


def refused(hf_dir: str, tmp_path) -> str:
  with pytest.raises(CheckpointMismatchError) as error:
    import_checkpoint(hf_dir, str(tmp_path / "refused"), small_base_config())
  assert not os.path.exists(tmp_path / "refused")
  return str(error.value)


def test_a_missing_tensor_is_refused_by_name(paligemma_copy, tmp_path):
  rewrite_weights(paligemma_copy, lambda t: t.pop("language_model.model.layers.1.mlp.up_proj.weight"))
  message = refused(paligemma_copy, tmp_path)
  assert ("missing: language_model.model.layers.1.mlp.up_proj.weight "
          "(config.json implies [48, 32])") in message


def test_an_extra_tensor_is_refused_by_name(paligemma_copy, tmp_path):
  extra = {"vision_tower.head.probe": np.zeros((1, 24), np.float32),
           "language_model.model.layers.2.mlp.up_proj.weight": np.zeros((48, 32), np.float32)}
  rewrite_weights(paligemma_copy, lambda t: t.update(extra))
  message = refused(paligemma_copy, tmp_path)
  assert "unexpected: vision_tower.head.probe [1, 24]" in message
  assert "unexpected: language_model.model.layers.2.mlp.up_proj.weight [48, 32]" in message


def test_shapes_that_disagree_with_config_json_are_refused_by_name(paligemma_copy, tmp_path):
  path = os.path.join(paligemma_copy, "config.json")
  with open(path) as f:
    config = json.load(f)
  config["text_config"]["intermediate_size"] = 40
  with open(path, "w") as f:
    json.dump(config, f)
  message = refused(paligemma_copy, tmp_path)
  assert ("wrong shape: language_model.model.layers.0.mlp.gate_proj.weight is [48, 32], "
          "config.json implies [40, 32]") in message
  assert message.count("wrong shape:") == 6  # gate, up and down of both layers


def test_an_output_embedding_unlike_the_input_embedding_is_refused(paligemma_copy, tmp_path):
  rewrite_weights(paligemma_copy, lambda t: t.update(
      {"language_model.lm_head.weight": t["language_model.model.embed_tokens.weight"] + 1}))
  assert "differs from language_model.model.embed_tokens.weight" in refused(paligemma_copy, tmp_path)


def test_pickled_weights_are_never_read(paligemma_copy, tmp_path):
  os.remove(os.path.join(paligemma_copy, "model.safetensors"))
  with open(os.path.join(paligemma_copy, "pytorch_model.bin"), "wb") as f:
    f.write(b"not read")
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    import_checkpoint(paligemma_copy, str(tmp_path / "refused"), small_base_config())


def test_a_folder_without_a_tokenizer_is_refused_naming_the_file(paligemma_copy, tmp_path):
  os.remove(os.path.join(paligemma_copy, "tokenizer.model"))
  with pytest.raises(FileNotFoundError, match=r"has no tokenizer.model, the checkpoint's SentencePiece"):
    import_checkpoint(paligemma_copy, str(tmp_path / "refused"), small_base_config())
  assert not os.path.exists(tmp_path / "refused")
