"""From an image file and a prompt to an answer: an imported PaliGemma, PaliGemma 2 or Gemma 3
reads exactly what the family's transformers processor gives its model (pixels within 1e-6, the
same token ids) and answers with transformers' greedy tokens. An id past the tokenizer is shown
as `<unk:ID>`, never sampled; `generate --chat` is the checkpoint's chat template; `generate`
runs from any working directory.

The checkpoints are random, of shapes no other test uses, with Gemma's vocabulary layout in
miniature: 320 SentencePiece pieces, 336 embedding rows, the image token right after the pieces
(where transformers' processors add it); the rows past the tokenizer are emitted now and then.
"""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from medpalm_m import runtime
from medpalm_m.convert import import_checkpoint
from medpalm_m.convert import processor as checkpoint_inputs
from medpalm_m.data import images as images_lib
from medpalm_m.data import tokenizer as tok
from medpalm_m.evaluation import Evaluator, prompt_features
from medpalm_m.model import decode
from tests.convert import parity, reference
from tests.convert.conftest import FAMILIES, run_from_elsewhere, small_base_config
from tests.data.builders.test_imaging_builders import write_dicom

PIECES, ROWS = 320, 336
IMAGE_TOKEN = PIECES
PAST = 331  # a row past the tokenizer, made likelier than the others
BOI, EOI, END_OF_TURN = 5, 6, 8  # reference.gemma_tokenizer's pieces
NEW_TOKENS = 28
VISION = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=24,
              num_hidden_layers=1, num_attention_heads=2, image_size=42, patch_size=14,
              vision_use_head=False)
TEXT = dict(vocab_size=ROWS, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16)
# Gemma 3's turn format, as MedGemma-4B-it's chat_template.jinja writes one user turn with text.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == "
    "'assistant' else message['role'] %}<start_of_turn>{{ role }}\n{% if message['content'] is "
    "string %}{{ message['content'] | trim }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>{% elif item['type'] == 'text' %}"
    "{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
# What a user writes to transformers' processor for one image, and to ours.
HF_IMAGE = {"paligemma": "<image>", "paligemma2": "<image>", "gemma3": "<start_of_image>"}
PROMPT = "<img>describe the chest xray  in detail"


def hf_config(family: str):
  if family == "gemma3":
    text = dict(TEXT, sliding_window=128, sliding_window_pattern=2)
    return transformers.Gemma3Config(vision_config=dict(VISION, image_size=84), text_config=text,
                                     mm_tokens_per_image=9, image_token_index=IMAGE_TOKEN,
                                     boi_token_index=BOI, eoi_token_index=EOI)
  text = dict(TEXT, model_type="gemma")
  if family == "paligemma2":
    text = dict(TEXT, model_type="gemma2", sliding_window=128, query_pre_attn_scalar=16,
                attn_logit_softcapping=30.0, final_logit_softcapping=20.0)
  return transformers.PaliGemmaConfig(vision_config=VISION, text_config=text,
                                      image_token_index=IMAGE_TOKEN, projection_dim=24)


def save_processor(family: str, hf_dir: str, image_size: int):
  """The family's processor saved into the checkpoint folder, as the Hub's folders hold it."""
  tokenizer_path = os.path.join(hf_dir, "tokenizer.model")
  reference.gemma_tokenizer(tokenizer_path, PIECES)
  special = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
             "eoi_token": "<end_of_image>"} if family == "gemma3" else {}
  with open(os.path.join(hf_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "GemmaTokenizer", "add_bos_token": True,
               "extra_special_tokens": special}, f)
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  size = {"height": image_size, "width": image_size}
  if family == "gemma3":
    processor = transformers.Gemma3Processor(transformers.Gemma3ImageProcessor(size=size), tokenizer,
                                             image_seq_length=9, chat_template=CHAT_TEMPLATE)
    with open(os.path.join(hf_dir, "generation_config.json"), "w") as f:
      json.dump({"eos_token_id": [tok.EOS_ID, END_OF_TURN]}, f)
  else:
    image_processor = transformers.SiglipImageProcessor(size=size)
    image_processor.image_seq_length = (image_size // 14) ** 2
    processor = transformers.PaliGemmaProcessor(image_processor, tokenizer)
  processor.save_pretrained(hf_dir)
  reference.gemma_tokenizer(tokenizer_path, PIECES)  # the SentencePiece file itself, unchanged


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  """{family: (transformers model, its processor as loaded from the folder, imported workdir)}."""
  root = tmp_path_factory.mktemp("inputs")
  out = {}
  for i, family in enumerate(FAMILIES):
    config = hf_config(family)
    model = reference.build(family, seed=10 + i, config=config)
    with torch.no_grad():
      # Small embeddings: the layers, not the last token's own row, choose the next token (a
      # random model with large tied embeddings repeats its input), so answers vary.
      embedding = model.get_input_embeddings().weight
      embedding *= 0.15
      embedding[PAST] *= 2.5  # likelier than the other rows past the tokenizer
      embedding[tok.EOS_ID] *= 0.05  # rarely chosen: answers run their full length
    hf_dir = str(root / f"{family}_hf")
    model.save_pretrained(hf_dir)
    save_processor(family, hf_dir, config.vision_config.image_size)
    processor = transformers.AutoProcessor.from_pretrained(hf_dir)
    cfg = small_base_config()
    cfg.data.max_prompt_tokens = 64
    workdir = str(root / f"{family}_imported")
    import_checkpoint(hf_dir, workdir, cfg)
    out[family] = (model, processor, workdir)
  return out


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
  """A non-square RGB PNG, a non-square JPEG and a 12-bit MONOCHROME1 DICOM."""
  root = tmp_path_factory.mktemp("image_files")
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:61, 0:37]
  smooth = np.stack([x * 6, y * 4, (x + y) * 2], -1) + rng.integers(0, 40, (61, 37, 3))
  Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(root / "tall.png")
  wide = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
  Image.fromarray(wide).save(root / "wide.jpg", quality=90)
  write_dicom(root / "scan.dcm", rng.integers(0, 4096, (40, 64)), photometric="MONOCHROME1")
  return [str(root / name) for name in ("tall.png", "wide.jpg", "scan.dcm")]


def processor_image(path: str) -> Image.Image:
  """What a transformers user hands the processor: the file opened by PIL; a DICOM, which PIL
  cannot read, as medpalm_m decodes it (windowed, MONOCHROME1 inverted, 8 bits)."""
  if path.endswith(".dcm"):
    return Image.fromarray(images_lib.read_image(path))
  return Image.open(path)


def transformers_inputs(family, processor, path: str, prompt: str, chat: bool = False):
  if chat:  # as MedGemma's model card asks: the image first, then the text
    content = [{"type": "image", "image": processor_image(path)},
               {"type": "text", "text": prompt.replace("<img>", "")}]
    return processor.apply_chat_template([{"role": "user", "content": content}],
                                         add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")
  text = prompt.replace("<img>", HF_IMAGE[family])
  inputs = processor(images=[processor_image(path)], text=text, return_tensors="pt")
  inputs.pop("labels", None)
  return inputs


def our_inputs(workdir: str, paths: list[str], prompt: str, chat: bool = False):
  cfg = runtime.load_config(workdir)
  spec = runtime.sequence_spec(cfg)
  tokenizer = tok.Tokenizer(runtime.tokenizer_path(cfg))
  return cfg, tokenizer, [prompt_features(cfg, spec, tokenizer, prompt, [p], chat=chat)
                          for p in paths]


def greedy(workdir: str, cfg, tokenizer, features) -> list[list[int]]:
  """`generate`'s greedy decoding of every example at once."""
  rt = runtime.Runtime(cfg)
  params, _ = rt.restore_params(workdir)
  evaluator = Evaluator(rt, tokenizer, sampling=decode.SamplingConfig(max_new_tokens=NEW_TOKENS),
                        batch_size=len(features), data_parallel=False)
  new_tokens, _ = evaluator.decode_batch(params, evaluator.global_batch(features), None)
  return [parity._until_eos(row) for row in np.asarray(new_tokens)]


def check_inputs(ours, theirs) -> None:
  prompt = ours["tokens"][:ours["prompt_length"]]
  ids = np.where(prompt == tok.IMAGE_ID, IMAGE_TOKEN, prompt)
  assert ids.tolist() == theirs["input_ids"][0].tolist()
  pixels = ours["images"][0].astype(np.float32) / 127.5 - 1.0
  expected = theirs["pixel_values"][0].permute(1, 2, 0).numpy()
  assert pixels.shape == expected.shape and np.abs(pixels - expected).max() < 1e-6


def transformers_greedy(model, inputs, eos) -> list[int]:
  with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=eos,
                         pad_token_id=tok.PAD_ID)
  return parity._until_eos(out[0, inputs["input_ids"].shape[1]:].numpy())


@pytest.mark.parametrize("family", FAMILIES)
def test_pixels_tokens_and_greedy_answers_from_files_are_transformers(family, imported, image_files):
  model, processor, workdir = imported[family]
  cfg, tokenizer, features = our_inputs(workdir, image_files, PROMPT)
  ours = greedy(workdir, cfg, tokenizer, features)
  for path, feature, answer in zip(image_files, features, ours):
    inputs = transformers_inputs(family, processor, path, PROMPT)
    check_inputs(feature, inputs)
    theirs = transformers_greedy(model, inputs, tok.EOS_ID)
    assert answer == theirs, os.path.basename(path)
    assert len(answer) >= 24, (os.path.basename(path), answer)
  # The files differ, and so do the answers: the image is read.
  assert len({tuple(a) for a in ours}) == 3
  # Ids past the tokenizer are among them, and decode as <unk:ID>.
  past = sorted({i for a in ours for i in a if i >= PIECES})
  assert past and all(f"<unk:{i}>" in tokenizer.decode(a) for a in ours for i in a if i >= PIECES)
  print(f"{family}: {sum(map(len, ours))} greedy tokens equal, ids past the tokenizer: {past}")


def test_the_import_records_each_familys_processor(imported):
  layouts = {f: runtime.sequence_spec(runtime.load_config(imported[f][2])) for f in FAMILIES}
  assert {f: (s.image_resize, s.image_resample) for f, s in layouts.items()} == {
      "paligemma": ("stretch", "bicubic"), "paligemma2": ("stretch", "bicubic"),
      "gemma3": ("stretch", "bilinear")}
  assert layouts["paligemma"].prompt_layout.bos_after_images
  assert layouts["gemma3"].prompt_layout.image_open == "\n\n<start_of_image>"
  gemma3 = runtime.load_config(imported["gemma3"][2])
  assert gemma3.data.stop_token_ids == [END_OF_TURN] and gemma3.data.chat_template
  assert not runtime.load_config(imported["paligemma"][2]).data.chat_template
  # A model trained here keeps medpalm_m's own: aspect ratio kept, zero padding, [BOS] first.
  own = runtime.base_config().data
  assert (own.image_resize, own.prompt_layout.bos_after_images, own.prompt_layout.image_open) == (
      "pad", False, "")


def test_chat_is_the_checkpoints_turn_format_and_stops_at_the_end_of_turn(imported, image_files):
  model, processor, workdir = imported["gemma3"]
  cfg, tokenizer, features = our_inputs(workdir, image_files[:1], PROMPT, chat=True)
  inputs = transformers_inputs("gemma3", processor, image_files[0], PROMPT, chat=True)
  check_inputs(features[0], inputs)
  text = tokenizer.decode([i for i in features[0]["tokens"] if i != tok.IMAGE_ID])
  assert text.startswith("<start_of_turn>user\n\n\n<start_of_image><end_of_image>\n\ndescribe")
  assert text.endswith("<end_of_turn>\n<start_of_turn>model\n")
  theirs = transformers_greedy(model, inputs, [tok.EOS_ID, END_OF_TURN])
  ours = greedy(workdir, cfg, tokenizer, features)[0]
  stop = next((k for k, i in enumerate(ours) if i == END_OF_TURN), len(ours) - 1)
  assert ours[:stop + 1] == theirs


def test_generate_json_from_another_directory_shows_ids_past_the_tokenizer(imported, image_files,
                                                                           tmp_path):
  workdir = imported["paligemma"][2]
  cfg, tokenizer, features = our_inputs(workdir, image_files[:1], PROMPT)
  expected = greedy(workdir, cfg, tokenizer, features)[0]
  result = run_from_elsewhere(tmp_path, "medpalm_m.generate", f"--workdir={workdir}",
                              f"--image={image_files[0]}", f"--prompt={PROMPT}", "--json",
                              f"--max_new_tokens={NEW_TOKENS}")
  assert result.returncode == 0, result.stderr[-3000:]
  answer = json.loads(result.stdout)
  assert answer["token_ids"] == [i for i in expected if i != tok.EOS_ID]
  past = [i for i in answer["token_ids"] if i >= PIECES]
  assert past and all(f"<unk:{i}>" in answer["answer"] and f"<unk:{i}>" in answer["tokens"]
                      for i in past)
  # --chat on a checkpoint without a chat template: one line naming the setting.
  refused = run_from_elsewhere(tmp_path, "medpalm_m.generate", f"--workdir={workdir}",
                               f"--image={image_files[0]}", f"--prompt={PROMPT}", "--chat")
  assert refused.returncode == 2 and "config.data.chat_template is empty" in refused.stderr


def test_sampling_never_draws_an_id_past_the_tokenizer():
  logits = np.zeros((64, ROWS), np.float32)
  logits[:, PAST] = 50.0  # by far the likeliest, and past the tokenizer

  def draw(config):
    return np.asarray(decode._choose(jnp.asarray(logits), jax.random.key(0), config))

  assert draw(decode.SamplingConfig(temperature=1.0, vocab_limit=PIECES)).max() < PIECES
  assert (draw(decode.SamplingConfig(temperature=1.0)) == PAST).all()


@pytest.mark.parametrize("setting, message", [
    ({"image_mean": [0.48, 0.46, 0.41]}, "image_mean is [0.48, 0.46, 0.41]"),
    ({"do_pan_and_scan": True}, "do_pan_and_scan is true"),
    ({"resample": 1}, "resample is 1"),
    ({"size": {"height": 448, "width": 448}}, "config.json image_size is 224")])
def test_a_processor_medpalm_m_would_not_reproduce_is_refused_by_name(tmp_path, setting, message):
  with open(tmp_path / "preprocessor_config.json", "w") as f:
    json.dump({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3, **setting}, f)
  with pytest.raises(ValueError, match=re.escape(message)):
    checkpoint_inputs.image_resample(str(tmp_path), "bilinear", 224)
  assert checkpoint_inputs.image_resample(str(tmp_path / "none"), "bilinear", 224) == "bilinear"
