"""Open checkpoints in and out: PaliGemma, PaliGemma 2 and Gemma 3 (MedGemma) from Hugging Face.

    python -m medpalm_m.convert import --hf_dir=DIR --workdir=OUT [--config=...]
    python -m medpalm_m.convert export --workdir=OUT_OR_RUN --out=DIR [--step=N]

Import maps a local Hugging Face folder (config.json, safetensors, tokenizer.model) onto the
medpalm_m model through its config fields; the result is a workdir that `train`
(config.init_from), `evaluate` and `generate` use like any other. Export writes a workdir's
weights back into the same files. Parity with transformers is tested in tests/convert/.
"""

from medpalm_m.convert.rules import CheckpointMismatchError
from medpalm_m.convert.hf_checkpoint import export_checkpoint, import_checkpoint

__all__ = ["CheckpointMismatchError", "export_checkpoint", "import_checkpoint"]
