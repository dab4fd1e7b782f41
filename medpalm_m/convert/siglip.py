"""The SigLIP vision tower of PaliGemma and Gemma 3, without its attention-pooling head.

config.json's `vision_config` -> `ViTConfig` fields, and the tower's tensors -> our ViT's. The
patch embedding is a stride-p convolution [width, 3, p, p]; our ViT holds the same weights as
one [p*p*3, width] matrix over (row, column, channel)-ordered patch pixels.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from medpalm_m.convert.rules import PREFIXES, Rule, copy, transpose
from medpalm_m.model.vit import ViTConfig

# transformers' SiglipVisionConfig defaults, for the keys a config.json may leave out.
_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 num_channels=3, image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh",
                 layer_norm_eps=1e-6, vision_use_head=True)


def vit_config(vision: Mapping[str, Any], where: str) -> dict[str, Any]:
  c = {**_DEFAULTS, **vision}
  if c.get("model_type", "siglip_vision_model") != "siglip_vision_model":
    raise ValueError(f"{where}: vision_config.model_type is {c['model_type']!r}; only SigLIP "
                     "('siglip_vision_model') towers are supported")
  if c["vision_use_head"]:
    raise ValueError(f"{where}: vision_config.vision_use_head is true; PaliGemma and Gemma 3 use "
                     "the patch tokens, not SigLIP's pooling head")
  if c["hidden_act"] != "gelu_pytorch_tanh":
    raise ValueError(f"{where}: vision_config.hidden_act is {c['hidden_act']!r}; the ViT's MLP "
                     "is the tanh-approximated GELU ('gelu_pytorch_tanh')")
  if c["num_channels"] != 3:
    raise ValueError(f"{where}: vision_config.num_channels is {c['num_channels']}, expected 3 (RGB)")
  return dict(image_size=_square(c["image_size"], "image_size", where),
              patch_size=_square(c["patch_size"], "patch_size", where), width=c["hidden_size"],
              depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
              mlp_dim=c["intermediate_size"], norm_eps=c["layer_norm_eps"])


def _square(value, key: str, where: str) -> int:
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise ValueError(f"{where}: vision_config.{key} {value} is not square")
    value = value[0]
  return int(value)


def vit_rules(cfg: ViTConfig) -> list[Rule]:
  w, p, f, heads = cfg.width, cfg.patch_size, cfg.mlp_dim, cfg.num_heads
  head_dim = w // heads
  v = PREFIXES["vision"][0]
  rules = [
      Rule("vit/patch_embed", (v + "embeddings.patch_embedding.weight",), ((w, 3, p, p),),
           lambda conv: conv.transpose(2, 3, 1, 0).reshape(p * p * 3, w),
           lambda x: (x.reshape(p, p, 3, w).transpose(3, 2, 0, 1),)),
      copy("vit/patch_bias", v + "embeddings.patch_embedding.bias", (w,)),
      copy("vit/pos_embed", v + "embeddings.position_embedding.weight", (cfg.num_patches, w)),
      copy("vit/final_norm/scale", v + "post_layernorm.weight", (w,)),
      copy("vit/final_norm/bias", v + "post_layernorm.bias", (w,)),
  ]
  for i in range(cfg.depth):
    layer, ours = f"{v}encoder.layers.{i}.", f"vit/blocks/{i}/"
    attn = layer + "self_attn."
    qkv = tuple(f"{attn}{n}_proj.weight" for n in "qkv")
    qkv_bias = tuple(f"{attn}{n}_proj.bias" for n in "qkv")
    rules += [
        Rule(ours + "qkv", qkv, ((w, w),) * 3,
             lambda *ws: np.stack([m.T.reshape(w, heads, head_dim) for m in ws], axis=1),
             lambda x: tuple(x[:, j].reshape(w, w).T for j in range(3))),
        Rule(ours + "qkv_bias", qkv_bias, ((w,),) * 3,
             lambda *bs: np.stack([b.reshape(heads, head_dim) for b in bs]),
             lambda x: tuple(x[j].reshape(w) for j in range(3))),
        transpose(ours + "out", attn + "out_proj.weight", (w, w), (heads, head_dim, w)),
        copy(ours + "out_bias", attn + "out_proj.bias", (w,)),
        copy(ours + "norm1/scale", layer + "layer_norm1.weight", (w,)),
        copy(ours + "norm1/bias", layer + "layer_norm1.bias", (w,)),
        copy(ours + "norm2/scale", layer + "layer_norm2.weight", (w,)),
        copy(ours + "norm2/bias", layer + "layer_norm2.bias", (w,)),
        transpose(ours + "mlp_in", layer + "mlp.fc1.weight", (f, w), (w, f)),
        copy(ours + "mlp_in_bias", layer + "mlp.fc1.bias", (f,)),
        transpose(ours + "mlp_out", layer + "mlp.fc2.weight", (w, f), (f, w)),
        copy(ours + "mlp_out_bias", layer + "mlp.fc2.bias", (w,)),
    ]
  return rules
