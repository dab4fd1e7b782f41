"""The runtime every entry point shares: processes, mesh, model template, shardings, parameters.

    runtime = Runtime(cfg)                       # mesh + rules from the config, abstract model
    params, step = runtime.restore_params(workdir)  # each array read straight into its shard

`train` adds the optimizer, the train state and the jitted step on top of a Runtime
(`medpalm_m.trainer`); evaluation, generation, conversion, planning and the notebooks use a
Runtime alone, so loading a checkpoint to look at it never builds an optimizer. Here too: joining
a multi-process run, the data directory and tokenizer of a config, its sequence layout, and the
workdir's config.json.
"""

from __future__ import annotations

import functools
import json
import logging as std_logging
import os
import sys
from typing import Any, Collection, Mapping

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m import repository
from medpalm_m import sharding
from medpalm_m.data import preprocess
from medpalm_m.data import tokenizer as tok
from medpalm_m.model.lora import is_adapter
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.template import ModelTemplate

REPO_ROOT = repository.ROOT
BASE_CONFIG = repository.config_path("base.py")


def initialize_distributed() -> None:
  """Join a multi-process run when the environment describes one (TPU pods, SLURM, or an
  explicit coordinator); a single process needs nothing.

  MEDPALM_M_COORDINATOR (+ MEDPALM_M_NUM_PROCESSES, MEDPALM_M_PROCESS_ID): an explicit
  coordinator (launch/multiprocess.sh, medpalm_m.launch_local). MEDPALM_M_DISTRIBUTED=auto: JAX
  detects the cluster itself (launch/tpu_pod.sh on TPU pod slices). A SLURM job with more than
  one task is detected without either; JAX then gives each task the GPU of its SLURM_LOCALID.
  """
  if os.environ.get("MEDPALM_M_COORDINATOR"):
    jax.distributed.initialize(
        coordinator_address=os.environ["MEDPALM_M_COORDINATOR"],
        num_processes=int(os.environ["MEDPALM_M_NUM_PROCESSES"]),
        process_id=int(os.environ["MEDPALM_M_PROCESS_ID"]))
  elif (os.environ.get("MEDPALM_M_DISTRIBUTED") == "auto"
        or (os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1)):
    jax.distributed.initialize()


def quiet_libraries() -> None:
  """orbax and TFDS log every file they touch at INFO; our own progress goes to stderr.
  `--verbosity` on the command line keeps absl's level (and TFDS's probing warnings)."""
  from absl import flags, logging
  if not (flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present):
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_logger().addFilter(_DROP_TFDS_PROBES)
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()


class _DropTfdsProbes(std_logging.Filter):
  """TFDS warns once per dataset folder it probes that is not prepared ("Variant folder ... has no
  dataset_info.json"): 14 lines before the one that says which data is missing and how to build it
  (pipeline.MissingDataError)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Variant folder ")


_DROP_TFDS_PROBES = _DropTfdsProbes()


def say(message: str) -> None:
  """A progress line on stderr, from process 0 only."""
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


def sync(name: str) -> None:
  """Every process waits here for the others (a no-op in a single process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """True on every process when it is True on any: a preemption signal reaches the hosts of a
  pod at different steps, and a process that saved and left alone would hang the others in
  their next collective."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def gather_from_processes(value: Any) -> list[Any]:
  """`value` (anything JSON can hold) of every process, in process order; [value] in a single
  process. What evaluation uses to bring each process's share of the examples to process 0."""
  if jax.process_count() == 1:
    return [value]
  from jax.experimental import multihost_utils
  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int64(len(data)))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:len(data)] = data
  rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
  return [json.loads(bytes(row[:size]).decode()) for row, size in zip(rows, sizes)]


@functools.cache
def _base_config_module():
  import importlib.util
  spec = importlib.util.spec_from_file_location("medpalm_m_base_config", BASE_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def base_config() -> ml_collections.ConfigDict:
  """configs/base.py: every config key with its one default."""
  return _base_config_module().get_config()


def load_config(workdir: str, config: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """`config` when given, else the workdir's config.json laid over the base config (so that a
  workdir written before a key existed still reads that key's default)."""
  if config is not None:
    return config
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: pass --config=... or a workdir written by medpalm_m.train")
  with open(path) as f:
    saved = json.load(f)
  cfg = base_config()
  with cfg.ignore_type():
    _overlay(cfg, saved)
  return cfg


# Values that are whole, not patches on the base's default: a saved mixture is the mixture, a
# saved model is the model.
_WHOLE_VALUES = ("model", "mixture", "manual_dirs", "lr_multipliers")


def _overlay(cfg: ml_collections.ConfigDict, values: Mapping[str, Any]) -> None:
  for key, value in values.items():
    current = cfg[key] if key in cfg else None
    if (isinstance(value, dict) and isinstance(current, ml_collections.ConfigDict)
        and key not in _WHOLE_VALUES):
      _overlay(current, value)
    else:
      setattr(cfg, key, value)


def write_config(cfg: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))


def tokenizer_path(cfg) -> str:
  """config.data.tokenizer, or the synthetic benchmark's own SentencePiece model in data_dir."""
  if cfg.data.tokenizer:
    return os.path.expanduser(cfg.data.tokenizer)
  from medpalm_m.data import synthetic
  return synthetic.tokenizer_path(os.path.expanduser(cfg.data.data_dir))


def load_tokenizer(cfg) -> tok.Tokenizer:
  tokenizer = tok.Tokenizer(tokenizer_path(cfg))
  if tokenizer.vocab_size > cfg.model.decoder.vocab_size:
    raise ValueError(f"tokenizer {tokenizer_path(cfg)} has {tokenizer.vocab_size} pieces but "
                     f"config.model.decoder.vocab_size is {cfg.model.decoder.vocab_size}")
  if cfg.model.image_token_id != tok.IMAGE_ID:
    raise ValueError(f"config.model.image_token_id must be {tok.IMAGE_ID} (the tokenizer's <img>)")
  return tokenizer


def prepare_data(cfg) -> tuple[str, tok.Tokenizer]:
  """The data directory (the synthetic benchmark built when asked and missing, real datasets
  built from config.data.manual_dirs on first use) and the tokenizer."""
  from medpalm_m.data import build
  data_dir = os.path.expanduser(cfg.data.data_dir)
  uses_synthetic = any(t.startswith("synthetic_") for t in cfg.data.mixture)
  if uses_synthetic and cfg.data.build_synthetic:
    if jax.process_index() == 0:
      build.build_synthetic(data_dir, verbose=True)
    sync("synthetic data built")
  manual_dirs = {t: p for t, p in dict(cfg.data.manual_dirs).items() if p}
  if manual_dirs:
    if jax.process_index() == 0:
      build.prepare(data_dir, manual_dirs, skip_malformed=cfg.data.skip_malformed,
                    builder_options={t: dict(o) for t, o in dict(cfg.data.builder_options).items()})
    sync("real data built")
  return data_dir, load_tokenizer(cfg)


def sequence_spec(cfg, model_cfg: ModelConfig | None = None) -> preprocess.SequenceSpec:
  """The fixed layout of one example: BOS, prompt (image slots included), target, EOS; how its
  images are resized and its prompt laid out (medpalm_m's own, or an imported checkpoint's)."""
  model_cfg = model_cfg or ModelConfig.from_dict(cfg.model)
  return preprocess.SequenceSpec(
      max_prompt_tokens=cfg.data.max_prompt_tokens, max_target_tokens=cfg.data.max_target_tokens,
      max_images=cfg.data.max_images, image_size=model_cfg.vit.image_size,
      image_slots=model_cfg.num_image_tokens, image_resize=cfg.data.image_resize,
      image_resample=cfg.data.image_resample,
      prompt_layout=preprocess.PromptLayout(**dict(cfg.data.prompt_layout)))


def param_shardings(abstract_params: Mapping[str, Any], logical_axes: Mapping[str, Any], mesh,
                    rules) -> dict[str, NamedSharding]:
  """Each parameter's sharding on `mesh` (real or abstract) from its logical axes and the rules."""
  return {k: NamedSharding(mesh, sharding.logical_to_spec(logical_axes[k], v.shape, mesh, rules))
          for k, v in abstract_params.items()}


class Runtime:
  """One config on one mesh: the model template, the parameters' shapes and shardings, and the
  batch sharding. Nothing is allocated until parameters are restored."""

  def __init__(self, cfg, mesh=None):
    self.cfg = cfg
    self.model_cfg = ModelConfig.from_dict(cfg.model)
    self.mesh = mesh or sharding.make_mesh(dict(cfg.mesh))
    self.rules = sharding.rules_of(cfg)
    self.template, abstract = ModelTemplate.abstract(self.model_cfg)
    self.param_shardings = param_shardings(abstract, self.template.logical_axes, self.mesh, self.rules)
    self.abstract_params = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.param_shardings[k])
                            for k, v in abstract.items()}
    self.batch_sharding = sharding.batch_sharding(self.mesh, self.rules)

  @property
  def initializer_compiler_options(self) -> dict[str, Any]:
    """XLA options for the program that draws the initial parameters, which runs once.

    On CPU, LLVM at XLA's default level spends most of that program's compilation on its
    unrolled threefry fusions (280 for tests/small_config.py's 37 parameters). Level 1 gives
    bit-identical parameters: compile and run took 12.7 -> 4.6 s for tests/small_config.py and
    10.9 -> 7.0 s for configs/tiny.py (2-core AMD EPYC). Level 0 is faster still but changes ~4%
    of the draws by an ulp (no FMA contraction in its code), so a seed would no longer give the
    same model. The train step gains nothing from a lower level (its compilation is XLA's own
    passes, not LLVM's) and runs slower, so it keeps the default. Other backends: not measured,
    their defaults stand."""
    if self.mesh.devices.flat[0].platform == "cpu":
      return {"xla_backend_optimization_level": 1}
    return {}

  @property
  def spec(self) -> preprocess.SequenceSpec:
    return sequence_spec(self.cfg, self.model_cfg)

  def data_shard(self, global_batch_size: int) -> tuple[int, int]:
    """(index, count): which part of each global batch this process reads and feeds."""
    return sharding.process_batch_shard(self.batch_sharding, global_batch_size)

  def global_batch(self, local_batch: dict[str, np.ndarray], parts: int,
                   batch_sharding: NamedSharding | None = None) -> dict[str, jax.Array]:
    """One global batch from this process's part of it (one of `parts` equal parts)."""
    batch_sharding = batch_sharding or self.batch_sharding
    return {k: jax.make_array_from_process_local_data(batch_sharding, v,
                                                      (v.shape[0] * parts, *v.shape[1:]))
            for k, v in local_batch.items()}

  def batch_shards(self) -> int:
    """How many ways the batch axes split a batch: a global batch is a multiple of this."""
    axes = sharding.mesh_axes_of(dict(self.rules).get("batch"))
    return int(np.prod([self.mesh.shape[a] for a in axes], dtype=int))

  def process_rows(self, global_batch_size: int, batch_sharding: NamedSharding | None = None) -> list[int]:
    """The rows of a global batch that this process's devices hold, in order: what it feeds."""
    batch_sharding = batch_sharding or self.batch_sharding
    rows: set[int] = set()
    for device, index in batch_sharding.devices_indices_map((global_batch_size,)).items():
      if device.process_index == jax.process_index():
        rows.update(range(*index[0].indices(global_batch_size)))
    return sorted(rows)

  def constrain_cache(self, cache: list[dict]) -> list[dict]:
    """A KV cache laid out by the rules (batch over the batch axes), inside a jitted function."""
    from medpalm_m.model.decoder import CACHE_AXES
    return [{name: jax.lax.with_sharding_constraint(value, NamedSharding(
        self.mesh, sharding.logical_to_spec(CACHE_AXES[name], value.shape, self.mesh, self.rules)))
             for name, value in layer.items()} for layer in cache]

  def describe(self) -> dict[str, Any]:
    """Where this runs, as reports record it."""
    return {"devices": jax.device_count(), "processes": jax.process_count(),
            "mesh": {axis: int(size) for axis, size in self.mesh.shape.items()}}

  def restore_params(self, workdir: str, step: int | None = None, *,
                     left_out: Collection[str] = (),
                     adapters_may_be_missing: bool = False) -> tuple[dict[str, jax.Array], int]:
    """The parameters of `workdir`'s checkpoint `step` (default: the latest), each read into its
    shard; no optimizer state is read. Refuses a checkpoint of another model, naming tensors.

    `left_out`: parameters neither read nor required (the caller initialises them: a new adapter
    grafted on, config.init_from_fresh). `adapters_may_be_missing`: a checkpoint without this
    config's LoRA adapters (model.lora), such as an imported one, gives every other parameter;
    the caller initialises the adapters.
    """
    workdir = os.path.abspath(os.path.expanduser(workdir))
    checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    try:
      step = step if step is not None else checkpointer.latest_step()
      if step is None:
        raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}; train first "
                                f"(python -m medpalm_m.train --workdir={workdir} ...)")
      wanted = {k: v for k, v in self.abstract_params.items() if k not in left_out}
      if adapters_may_be_missing:
        saved = checkpointer.meta(step)["params"]
        wanted = {k: v for k, v in wanted.items() if k in saved or not is_adapter(k)}
      return checkpointer.restore_params(step, wanted, left_out=left_out), int(step)
    finally:
      checkpointer.close()
