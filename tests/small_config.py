"""A smaller, faster variant of configs/tiny.py for trainer and evaluator tests."""

import ml_collections

from configs import tiny

TASKS = ("synthetic_medqa", "synthetic_vqa_rad", "synthetic_precision_fda")


def get_config(tasks: str = "") -> ml_collections.ConfigDict:
  c = tiny.get_config()
  c.model.vit.update(image_size=32, patch_size=8, width=32, depth=1, num_heads=2, mlp_dim=64)
  c.model.decoder.update(width=32, depth=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)
  c.data.mixture = {t: 1.0 for t in (tasks.split(",") if tasks else TASKS)}
  c.data.max_prompt_tokens = 128
  c.data.max_target_tokens = 16
  c.train.update(num_steps=6, batch_size=8, log_every=1, checkpoint_every=3)
  c.optimizer.update(warmup_steps=0, schedule="constant", learning_rate=1e-3)
  c.eval.update(max_examples_per_task=8, batch_size=4, max_decode_tokens=8, bootstrap=0)
  return c
