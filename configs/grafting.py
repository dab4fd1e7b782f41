"""Grafting on MultiMedBench-mini: a trained ViT and decoder, both frozen, joined by a new adapter
that alone is trained (ELIXR's frozen encoder + Q-Former-like adapter + frozen PaLM 2; PaLM-E's
frozen-LLM variant).

Use it to ask how much of a model's multimodal skill a small adapter can recover between towers
that were trained apart or are too large to fine-tune, or to add an encoder to a language model
without changing a single weight of either: only the adapter's 0.22M parameters (of 3.7M) get
gradients and optimizer state, and no backward pass runs through the ViT
(medpalm_m.trainer.optimizer.partition).
Not for the best benchmark numbers: full fine-tuning (configs/tiny.py) moves every weight.

    python -m medpalm_m.train --config=configs/grafting.py --workdir=workdirs/grafting \\
      --config.init_from=workdirs/tiny          # the default run's workdir (`make run`)

The ViT and the decoder come from init_from's latest checkpoint (a frozen random-init encoder
would learn nothing). The adapter starts fresh (config.init_from_fresh): an attention pooler whose
16 learned queries cross-attend to the ViT's 64 patch tokens, then a fresh projector, so that the
adapter has to learn the map that the default run's jointly trained projector would hand it.
The decoder gets 16 tokens per image, as in the default run. `benchmarks/RESULTS.md` compares a
short grafting run with the fully fine-tuned default.
"""

import ml_collections

from configs import tiny


def get_config() -> ml_collections.ConfigDict:
  c = tiny.get_config()
  c.init_from = "workdirs/tiny"
  # The adapter is new: its parameters are not read from init_from, and neither is the projector
  # that the default run trained together with its ViT and decoder.
  c.init_from_fresh = "^(projector|adapter/)"
  c.model.update(adapter="attention_pooler", adapter_queries=16,
                 image_pool_tokens=None)  # the pooler reads all 64 patch tokens
  c.optimizer.freeze = "^(vit|decoder)/"
  c.train.num_steps = 300
  c.optimizer.update(learning_rate=3e-3, schedule="cosine", warmup_steps=20)
  return c
