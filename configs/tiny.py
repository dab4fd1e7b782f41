"""The default: a few-million-parameter Med-PaLM M that trains on MultiMedBench-mini on a CPU."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = dict(
      vit=dict(image_size=64, patch_size=8, width=128, depth=3, num_heads=4, mlp_dim=512),
      decoder=dict(vocab_size=2048, width=192, depth=4, num_heads=4, num_kv_heads=1,
                   head_dim=48, mlp_dim=768),
      image_token_id=4,  # fixed by medpalm_m.data.tokenizer: pad 0, eos 1, bos 2, unk 3, <img> 4
      attention="causal",
      dtype="float32",
  )
  return c
