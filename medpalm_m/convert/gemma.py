"""The Gemma, Gemma 2 and Gemma 3 text decoders of PaliGemma, PaliGemma 2 and MedGemma.

config.json's `text_config` -> `DecoderConfig` fields, and the decoder's tensors -> ours. Both
the keys transformers 4 wrote (rope_theta, rope_local_base_freq, rope_scaling,
sliding_window_pattern) and those transformers 5 writes (rope_parameters per layer type,
layer_types) are read.

All three: sequential blocks, RMSNorm with (1 + scale), GeGLU with the tanh GELU, input
embeddings scaled by sqrt(width) and shared with the output. Gemma 2 adds post-sublayer norms,
alternating local (sliding-window) and global layers, attention and final-logit soft-capping
and `query_pre_attn_scalar`; Gemma 3 adds query/key norms, five local layers per global one,
a RoPE wavelength of its own for local layers and linear RoPE scaling on global ones.
"""

from __future__ import annotations

from typing import Any, Mapping

from medpalm_m.convert.rules import PREFIXES, Rule, copy, transpose
from medpalm_m.model.decoder import DecoderConfig

# transformers' config defaults, for the keys a config.json may leave out.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": dict(vocab_size=256_000, hidden_size=3072, intermediate_size=24_576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256, rms_norm_eps=1e-6,
                  rope_theta=10_000.0, attention_bias=False),
    "gemma2": dict(vocab_size=256_000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, rms_norm_eps=1e-6,
                   rope_theta=10_000.0, attention_bias=False, query_pre_attn_scalar=256,
                   sliding_window=4096, final_logit_softcapping=30.0, attn_logit_softcapping=50.0),
    "gemma3_text": dict(vocab_size=262_208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, rms_norm_eps=1e-6,
                        rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, attention_bias=False,
                        query_pre_attn_scalar=256, sliding_window=4096, sliding_window_pattern=6,
                        final_logit_softcapping=None, attn_logit_softcapping=None),
}
_LAYER_TYPES = {"sliding_attention": "local", "full_attention": "global"}


def decoder_config(text: Mapping[str, Any], default_type: str, where: str) -> dict[str, Any]:
  kind = text.get("model_type", default_type)
  if kind not in _DEFAULTS:
    raise ValueError(f"{where}: text_config.model_type is {kind!r}; supported: {sorted(_DEFAULTS)}")
  c = {**_DEFAULTS[kind], **text}
  activation = c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh"
  if kind == "gemma" and activation == "gelu":
    activation = "gelu_pytorch_tanh"  # transformers reads Gemma 1's legacy 'gelu' this way too
  if activation != "gelu_pytorch_tanh":
    raise ValueError(f"{where}: text_config's activation is {activation!r}; Gemma's GeGLU uses "
                     "'gelu_pytorch_tanh'")
  if c["attention_bias"]:
    raise ValueError(f"{where}: text_config.attention_bias is true; Gemma attention has no biases")
  if kind == "gemma3_text" and c.get("use_bidirectional_attention"):
    raise ValueError(f"{where}: text_config.use_bidirectional_attention is true (an embedding "
                     "model); only causal Gemma 3 decoders are supported")
  if c.get("tie_word_embeddings", True) is False:
    raise ValueError(f"{where}: text_config.tie_word_embeddings is false; medpalm_m shares the "
                     "input and output embedding")
  head_dim = c["head_dim"] or c["hidden_size"] // c["num_attention_heads"]
  global_theta, local_theta, scale = _rope(c, kind, where)
  pattern = _attention_pattern(c, kind, where)
  has_local = "local" in pattern
  return dict(
      vocab_size=c["vocab_size"], width=c["hidden_size"], depth=c["num_hidden_layers"],
      num_heads=c["num_attention_heads"], num_kv_heads=c["num_key_value_heads"], head_dim=head_dim,
      mlp_dim=c["intermediate_size"], block="sequential", norm="rmsnorm", mlp_activation="geglu",
      scale_embeddings=True, post_norms=kind != "gemma", norm_eps=c["rms_norm_eps"],
      attn_logit_softcap=c.get("attn_logit_softcapping"),
      final_logit_softcap=c.get("final_logit_softcapping"),
      qk_norm=kind == "gemma3_text",
      query_pre_attn_scalar=None if kind == "gemma" else float(c["query_pre_attn_scalar"]),
      attention_pattern=list(pattern), sliding_window=c["sliding_window"] if has_local else None,
      rope_max_wavelength=global_theta,
      local_rope_max_wavelength=local_theta if has_local and local_theta != global_theta else None,
      rope_scale_factor=scale,
  )


def _rope(c: Mapping[str, Any], kind: str, where: str) -> tuple[float, float, float]:
  """(global layers' wavelength, local layers' wavelength, global layers' linear scale factor)."""
  default_local = _DEFAULTS[kind].get("rope_local_base_freq", _DEFAULTS[kind]["rope_theta"])
  params = c.get("rope_parameters")
  if params and ("full_attention" in params or "sliding_attention" in params):  # transformers 5, per type
    full, sliding = params.get("full_attention") or {}, params.get("sliding_attention") or {}
  elif params:  # transformers 5, one for all layers
    full = sliding = params
  else:  # transformers 4
    full = {"rope_theta": c["rope_theta"], **(c.get("rope_scaling") or {})}
    sliding = {"rope_theta": c.get("rope_local_base_freq", c["rope_theta"])}
  full_theta = float(full.get("rope_theta", c["rope_theta"]))
  local_theta = float(sliding.get("rope_theta", default_local))
  scales = []
  for name, p in (("global", full), ("local", sliding)):
    kind_of_rope = p.get("rope_type", p.get("type", "default"))
    if kind_of_rope == "default":
      scales.append(1.0)
    elif kind_of_rope == "linear":
      scales.append(float(p["factor"]))
    else:
      raise ValueError(f"{where}: {name} layers use RoPE type {kind_of_rope!r}; supported: "
                       "'default' and 'linear'")
  if scales[1] != 1.0 or (kind != "gemma3_text" and scales[0] != 1.0):
    raise ValueError(f"{where}: RoPE scaling is supported on Gemma 3's global layers only")
  return full_theta, local_theta, scales[0]


def _attention_pattern(c: Mapping[str, Any], kind: str, where: str) -> tuple[str, ...]:
  """Our repeating pattern of 'local'/'global' layers: the shortest period of the layer types."""
  depth = c["num_hidden_layers"]
  if kind == "gemma":
    return ("global",)
  types = c.get("layer_types")
  if types is None and kind == "gemma2":
    types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(depth)]
  if types is None:
    every = c.get("sliding_window_pattern") or c.get("_sliding_window_pattern") or 6
    types = ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(depth)]
  if len(types) != depth or set(types) - set(_LAYER_TYPES):
    raise ValueError(f"{where}: text_config.layer_types must give {depth} entries of "
                     f"{sorted(_LAYER_TYPES)}, got {types}")
  kinds = [_LAYER_TYPES[t] for t in types]
  period = next(p for p in range(1, depth + 1) if all(kinds[i] == kinds[i % p] for i in range(depth)))
  return tuple(kinds[:period])


def decoder_rules(cfg: DecoderConfig) -> list[Rule]:
  d, n, k, h, f = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  t = PREFIXES["text"][0]
  rules = [copy("decoder/embedding", t + "embed_tokens.weight", (cfg.vocab_size, d)),
           copy("decoder/final_norm/scale", t + "norm.weight", (d,))]
  for i in range(cfg.depth):
    layer, ours = f"{t}layers.{i}.", f"decoder/blocks/{i}/"
    rules += [
        transpose(ours + "attn/query", layer + "self_attn.q_proj.weight", (n * h, d), (d, n, h)),
        transpose(ours + "attn/key", layer + "self_attn.k_proj.weight", (k * h, d), (d, k, h)),
        transpose(ours + "attn/value", layer + "self_attn.v_proj.weight", (k * h, d), (d, k, h)),
        transpose(ours + "attn/out", layer + "self_attn.o_proj.weight", (d, n * h), (n, h, d)),
        transpose(ours + "mlp/gate", layer + "mlp.gate_proj.weight", (f, d), (d, f)),
        transpose(ours + "mlp/up", layer + "mlp.up_proj.weight", (f, d), (d, f)),
        transpose(ours + "mlp/down", layer + "mlp.down_proj.weight", (d, f), (f, d)),
        copy(ours + "attn_norm/scale", layer + "input_layernorm.weight", (d,)),
    ]
    if cfg.post_norms:  # Gemma 2/3: post_attention_layernorm normalises the attention output
      rules += [copy(ours + "post_attn_norm/scale", layer + "post_attention_layernorm.weight", (d,)),
                copy(ours + "mlp_norm/scale", layer + "pre_feedforward_layernorm.weight", (d,)),
                copy(ours + "post_mlp_norm/scale", layer + "post_feedforward_layernorm.weight", (d,))]
    else:  # Gemma 1: post_attention_layernorm is the norm before the MLP
      rules.append(copy(ours + "mlp_norm/scale", layer + "post_attention_layernorm.weight", (d,)))
    if cfg.qk_norm:
      rules += [copy(ours + "attn/query_norm/scale", layer + "self_attn.q_norm.weight", (h,)),
                copy(ours + "attn/key_norm/scale", layer + "self_attn.k_norm.weight", (h,))]
  return rules
