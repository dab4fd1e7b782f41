"""Hugging Face weight files: one `model.safetensors`, or shards listed by an index file.

Read and written with the safetensors package's numpy API. Importing ml_dtypes registers
bfloat16 with numpy, so bf16 checkpoints load as they are stored, without torch. Tensors are
listed (names, shapes, dtypes) before any is read, so a checkpoint that does not match its
config.json is refused without loading gigabytes first. Nothing here unpickles anything.
"""

from __future__ import annotations

import json
import os

import ml_dtypes  # also registers numpy's 'bfloat16', which safe_open's arrays use
import numpy as np
import safetensors.numpy
from safetensors import safe_open

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# safetensors dtype codes <-> numpy dtypes, for the dtypes a checkpoint's weights come in.
_DTYPES = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
           "BF16": np.dtype(ml_dtypes.bfloat16), "F64": np.dtype(np.float64)}


class WeightFiles:
  """The tensors of a checkpoint folder: which file holds each, its shape and stored dtype."""

  def __init__(self, directory: str):
    self.directory = directory
    index_path = os.path.join(directory, INDEX_FILE)
    if os.path.exists(index_path):
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
      files = sorted(set(weight_map.values()))
    elif os.path.exists(os.path.join(directory, SINGLE_FILE)):
      files = [SINGLE_FILE]
    else:
      raise FileNotFoundError(f"{directory} has neither {SINGLE_FILE} nor {INDEX_FILE}; export the "
                              "checkpoint with save_pretrained(..., safe_serialization=True)")
    self.file_of: dict[str, str] = {}
    self.shape: dict[str, tuple[int, ...]] = {}
    self.dtype: dict[str, str] = {}  # safetensors codes: 'F32', 'BF16', ...
    self.file_metadata: dict[str, dict[str, str] | None] = {}
    for name in files:
      with safe_open(os.path.join(directory, name), framework="np") as f:
        self.file_metadata[name] = f.metadata()
        for key in f.keys():
          if key in self.file_of:
            raise ValueError(f"{directory}: tensor {key} is stored twice ({self.file_of[key]}, {name})")
          view = f.get_slice(key)
          self.file_of[key] = name
          self.shape[key] = tuple(view.get_shape())
          self.dtype[key] = view.get_dtype()

  @property
  def names(self) -> list[str]:
    return list(self.file_of)

  def load(self, name: str) -> np.ndarray:
    if self.dtype[name] not in _DTYPES:
      raise ValueError(f"{os.path.join(self.directory, self.file_of[name])}: tensor {name} is "
                       f"{self.dtype[name]}; weights must be one of {sorted(_DTYPES)}")
    with safe_open(os.path.join(self.directory, self.file_of[name]), framework="np") as f:
      return f.get_tensor(name)


def numpy_dtype(code: str) -> np.dtype:
  return _DTYPES[code]


def write(directory: str, tensors: dict[str, np.ndarray], file_of: dict[str, str],
          file_metadata: dict[str, dict[str, str] | None]) -> list[str]:
  """Write `tensors` into the files `file_of` names (each with its header metadata, e.g.
  {'format': 'pt'} as save_pretrained writes). The safetensors library orders each file's
  tensors itself, so the same tensors give the same bytes. Returns the files written."""
  os.makedirs(directory, exist_ok=True)
  by_file: dict[str, dict[str, np.ndarray]] = {}
  for name, array in tensors.items():
    by_file.setdefault(file_of[name], {})[name] = np.ascontiguousarray(array)
  for name, group in by_file.items():
    safetensors.numpy.save_file(group, os.path.join(directory, name), metadata=file_metadata.get(name))
  return sorted(by_file)
