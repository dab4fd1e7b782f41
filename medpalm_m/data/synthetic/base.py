"""The base of every synthetic MultiMedBench-mini builder: a real TFDS builder (array_record).

A subclass defines its features, split sizes and `generate(rng, index, split) -> record`. Records
are generated from a seed derived from (builder name, split, index), so a build is deterministic
and any record can be regenerated alone. Test records whose `content_key` also occurs in train are
regenerated with the next seed, so the held-out split never repeats a training example. An
evaluation-only builder (the zero-shot tasks') has no train split.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

_SPLIT_IDS = {"train": 0, "test": 1}


class SyntheticBuilder(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  SPLIT_SIZES: dict[str, int] = {"train": 1000, "test": 200}
  DESCRIPTION = ""

  def __init__(self, *, seed: int = 0, **kwargs):
    self.seed = seed
    kwargs.setdefault("file_format", "array_record")
    if seed:
      # Keep each seed's data apart: <data_dir>/<name>/seed_<seed>/<version>. Seed 0, the
      # default, keeps the plain <data_dir>/<name>/<version>.
      kwargs.setdefault("config", tfds.core.BuilderConfig(name=f"seed_{seed}", version=self.VERSION))
    super().__init__(**kwargs)

  # Subclass interface -------------------------------------------------------------------------
  def features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    raise NotImplementedError

  def content_key(self, record: dict[str, Any]) -> str:
    """What makes two records the same example; default: every field's bytes."""
    digest = hashlib.sha1()
    for key in sorted(record):
      value = record[key]
      digest.update(key.encode())
      digest.update(np.asarray(value).tobytes() if not isinstance(value, (str, bytes)) else
                    (value.encode() if isinstance(value, str) else value))
    return digest.hexdigest()

  # TFDS plumbing ------------------------------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=self.features())

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded: everything is generated here
    return {split: self._generate_examples(split) for split in self.SPLIT_SIZES}

  def _rng(self, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    name_hash = zlib.crc32(self.name.encode())
    return np.random.default_rng([self.seed, name_hash, _SPLIT_IDS[split], index, attempt])

  def records(self, split: str) -> Iterator[dict[str, Any]]:
    """Every record of a split in order, without TFDS (used by the build and by tests).

    Subclasses whose records are not independent draws (genomics simulates one genome per
    split) may override this instead of `generate`.
    """
    train_keys: set[str] = set()
    if "train" not in self.SPLIT_SIZES:
      pass  # an evaluation-only builder: nothing to keep apart from
    elif split == "train":
      self._train_keys = train_keys  # filled as train is generated, reused by the test split
    elif getattr(self, "_train_keys", None) is not None and len(self._train_keys) == self.SPLIT_SIZES["train"]:
      train_keys = self._train_keys
    else:
      train_keys = {self.content_key(r) for r in self.records("train")}
    for index in range(self.SPLIT_SIZES[split]):
      for attempt in range(100):
        record = self.generate(self._rng(split, index, attempt), index, split)
        if self.content_key(record) not in train_keys:
          break
      else:
        raise RuntimeError(f"{self.name}: could not generate a {split} record {index} unlike train")
      if split == "train":
        train_keys.add(self.content_key(record))
      record["id"] = f"{self.name}-{split}-{index}"
      yield record

  def _generate_examples(self, split: str):
    for record in self.records(split):
      yield record["id"], record
