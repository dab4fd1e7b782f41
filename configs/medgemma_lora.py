"""LoRA fine-tuning of an imported MedGemma 4B (or PaliGemma) on one 80 GB GPU.

Use it when you have one GPU and want to adapt MedGemma to MultiMedBench (or your own task
mixture) rather than reproduce the paper's full fine-tuning: only low-rank adapters on the
decoder's projections train (29.8M, 0.7% of the weights), so there are no gradients and no optimizer
state for the 4.3B base weights, and the export is an ordinary MedGemma checkpoint. For the
paper's recipe on a pod use configs/paligemma_multimedbench.py instead.

    python -m medpalm_m.convert import --hf_dir=/ckpt/medgemma-4b-it --workdir=/ckpt/medgemma
    python -m medpalm_m.plan --config=configs/medgemma_lora.py:/ckpt/medgemma
    python -m medpalm_m.train --config=configs/medgemma_lora.py:/ckpt/medgemma --workdir=W \\
      --config.data.data_dir=/data/tfds --config.data.manual_dirs.medqa=/dl/MedQA/data_clean ...
    python -m medpalm_m.convert export --workdir=W --out=/ckpt/medgemma_tuned

The argument after ':' is the imported workdir: its model, tokenizer and weights
(config.init_from; the adapters start fresh, B at zero, so step 0 is the imported model).
Without it the model is MedGemma 4B's architecture (Gemma 3 4B's config.json), which is what
`plan` needs to size the run before anything is downloaded.

Settings, on top of configs/paligemma_multimedbench.py (the MultiMedBench mixture, 454 text
tokens beside the image's 256, outputs up to 256 tokens, bfloat16 compute, full remat):
- LoRA rank 16, alpha 16 on every attention and MLP projection of the decoder ("all-linear"),
  ViT, projector and embeddings frozen (config.optimizer.freeze): the recipe of Google's MedGemma
  fine-tuning notebook (PEFT: r=16, lora_alpha=16, AdamW at 2e-4, linear decay after 3% warmup,
  gradient norm clipped at 0.3), whose LoRA dropout 0.05 we do not have; decoder dropout off
  (Gemma's own setting) since the adapters are small.
- Batch 16 as 4 micro-batches of 4 examples: one micro-batch's float32 logits over Gemma's 262k
  vocabulary (3 GB per example) are the largest activation. Evaluation batch 8 for the same reason.
- One device: mesh 1x1x1 and config.topology 1xH100; more GPUs add data parallelism
  (--config.mesh.data=-1 --config.mesh.fsdp=1).
"""

import ml_collections

from configs import paligemma_multimedbench
from medpalm_m.convert import gemma3
from medpalm_m.data import tokenizer as tok
from medpalm_m.model.lora import BASE_WEIGHTS


def get_config(imported_workdir: str = "") -> ml_collections.ConfigDict:
  c = paligemma_multimedbench.get_config(imported_workdir)
  if not imported_workdir:
    paligemma_multimedbench.use_model(
        c, gemma3.model_config(gemma3.HUB_4B, tok.IMAGE_ID, "MedGemma 4B's config.json"))
  c.model.decoder.dropout = 0.0
  c.model.lora = dict(rank=16, alpha=16.0, targets=".", vit=False)
  c.optimizer.update(name="adamw", learning_rate=2e-4, schedule="linear", b1=0.9, b2=0.999,
                     weight_decay=0.0, clip_norm=0.3, freeze=BASE_WEIGHTS, lr_multipliers={})
  c.train.update(batch_size=16, grad_accum_steps=4, num_steps=3000)
  c.optimizer.warmup_steps = c.train.num_steps * 3 // 100
  c.mesh = dict(data=1, fsdp=-1, tensor=1)
  c.topology = "1xH100"
  c.eval.batch_size = 8
  return c
