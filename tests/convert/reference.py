"""Tiny random PaliGemma, PaliGemma 2 and Gemma 3 checkpoints made with transformers, and its
outputs for them: the reference the imported models are held to.

Unusual on purpose: head_dim (12) is not width / heads (8), 2 KV heads for 4 query heads, an
odd vocabulary (301), a query_pre_attn_scalar unlike head_dim, norm epsilons unlike the
defaults, sliding windows shorter than the test sequences, soft-caps that bite (PaliGemma 2),
linear RoPE scaling and a local RoPE wavelength (Gemma 3). Every weight is random, norms and
Gemma 3's projector included (transformers initialises those to zero, which would hide a wrong
mapping), so the image, every layer and every norm change the logits.
"""

from __future__ import annotations

import io

import numpy as np
import sentencepiece as spm
import torch
import transformers

VOCAB = 301
HF_IMAGE_TOKEN = 300  # the checkpoint's image token; ours is medpalm_m.data.tokenizer.IMAGE_ID
VISION = dict(model_type="siglip_vision_model", hidden_size=24, intermediate_size=40,
              num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14,
              vision_use_head=False, layer_norm_eps=1e-5)
TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=12, rms_norm_eps=1e-5)


def hf_config(name: str):
  if name == "paligemma":
    return transformers.PaliGemmaConfig(vision_config=VISION, text_config=dict(TEXT, model_type="gemma"),
                                        image_token_index=HF_IMAGE_TOKEN, projection_dim=32)
  if name == "paligemma2":
    text = dict(TEXT, model_type="gemma2", num_hidden_layers=3, sliding_window=12,
                query_pre_attn_scalar=10, attn_logit_softcapping=5.0, final_logit_softcapping=3.0)
    return transformers.PaliGemmaConfig(vision_config=VISION, text_config=text,
                                        image_token_index=HF_IMAGE_TOKEN, projection_dim=32)
  if name == "gemma3":
    text = dict(TEXT, num_hidden_layers=3, sliding_window=8, sliding_window_pattern=3,
                query_pre_attn_scalar=10, rope_theta=1e6, rope_local_base_freq=1e4,
                rope_scaling={"rope_type": "linear", "factor": 4.0})
    return transformers.Gemma3Config(vision_config=dict(VISION, image_size=56), text_config=text,
                                     mm_tokens_per_image=4, image_token_index=HF_IMAGE_TOKEN,
                                     boi_token_index=298, eoi_token_index=299)
  raise KeyError(name)


def build(name: str, seed: int = 0, config=None):
  """A randomly initialised transformers model of family `name` (its `config`, default
  hf_config(name)), in eval mode, eager attention."""
  config = config or hf_config(name)
  config._attn_implementation = "eager"  # soft-capping and the masks exactly as written
  cls = (transformers.Gemma3ForConditionalGeneration if name == "gemma3"
         else transformers.PaliGemmaForConditionalGeneration)
  model = cls(config).eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for param_name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=generator)
      if p.ndim == 1:  # norms and biases: around their neutral value
        neutral = 1.0 if "layer_norm" in param_name or "post_layernorm" in param_name else 0.0
        p.copy_(neutral + 0.2 * noise if param_name.endswith("weight") else 0.2 * noise)
      else:
        fan_in = p.shape[0] if "mm_input_projection" in param_name else int(np.prod(p.shape[1:]))
        p.copy_(noise / fan_in**0.5)
  return model


def pixel_values(images: np.ndarray) -> torch.Tensor:
  """uint8 [N, H, W, 3] -> [N, 3, H, W] in [-1, 1], computed as our model computes it."""
  return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)


def hf_tokens(tokens: np.ndarray, image_token_id: int) -> torch.Tensor:
  """Our token ids with our image placeholder replaced by the checkpoint's image token."""
  return torch.from_numpy(np.where(tokens == image_token_id, HF_IMAGE_TOKEN, tokens).astype(np.int64))


def hub_name(module_name: str) -> str:
  """transformers 5's parameter names -> the Hub's tensor names (those our rules use)."""
  for module, hub in (("model.language_model.", "language_model.model."),
                      ("model.vision_tower.vision_model.", "vision_tower.vision_model."),
                      ("model.vision_tower.", "vision_tower.vision_model."),
                      ("model.multi_modal_projector.", "multi_modal_projector.")):
    if module_name.startswith(module):
      return hub + module_name[len(module):]
  return module_name


def gemma_tokenizer(path: str, vocab_size: int = VOCAB) -> None:
  """A SentencePiece model laid out as Gemma's: pad 0, <eos> 1, <bos> 2, unk 3, <mask> 4, Gemma 3's
  image delimiters (5, 6) and turn markers (7, 8) as user-defined pieces, byte fallback, no dummy
  prefix and no whitespace normalisation (transformers' GemmaTokenizer encodes as it does), and a
  piece for every id below `vocab_size`."""
  words = ("chest xray shows no effusion pleural cardiomegaly left lower lobe opacity normal heart "
           "size lungs clear acute cardiopulmonary process right upper consolidation").split()
  rng = np.random.default_rng(0)
  sentences = [" ".join(rng.choice(words, size=8)) + "\n" * (i % 3) for i in range(300)]
  proto = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=proto, vocab_size=vocab_size,
      model_type="bpe", byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", num_threads=1,
      add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity",
      minloglevel=2, user_defined_symbols=["<mask>", "<start_of_image>", "<end_of_image>",
                                           "<start_of_turn>", "<end_of_turn>"])
  with open(path, "wb") as f:
    f.write(proto.getvalue())
