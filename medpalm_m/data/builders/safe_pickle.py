"""Loading a pickle that may hold only plain data: lists, dicts, strings, numbers (and None).

Unpickling runs code only through globals: every class, function or callable a pickle uses is
fetched by `Unpickler.find_class` (GLOBAL, STACK_GLOBAL, INST and the EXT opcodes all go through
it), and REDUCE, BUILD and OBJ can only call what was fetched. `load_plain` refuses every
global, so no constructor, `__reduce__` payload or `__setstate__` runs, and then checks that the
result is plain data. Persistent ids are refused too (the default Unpickler behaviour).
"""

from __future__ import annotations

import os
import pickle
from typing import Any

_PLAIN_TYPES = (list, dict, str, int, float, bool, type(None))


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle asks for code (a global) or holds something other than plain data."""


class _PlainDataUnpickler(pickle.Unpickler):

  def __init__(self, file, path: str):
    super().__init__(file, encoding="utf-8")  # Python 2 str pickles decode as text
    self._path = path

  def find_class(self, module: str, name: str):
    raise UnsafePickleError(
        f"{self._path}: refused to load the global {module}.{name}; this pickle may only hold "
        "lists, dicts, strings and numbers. Use the dataset's original file (or its parquet copy)")


def load_plain(path: str | os.PathLike) -> Any:
  """The object pickled in `path`, if it is built of plain lists/dicts/str/numbers only."""
  path = str(path)
  with open(path, "rb") as f:
    try:
      value = _PlainDataUnpickler(f, path).load()
    except UnsafePickleError:
      raise
    except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError) as e:
      raise UnsafePickleError(f"{path}: not a readable pickle: {type(e).__name__}: {e}") from e
  stack = [value]
  while stack:  # iterative: a deep pickle must not overflow the interpreter's stack
    item = stack.pop()
    if not isinstance(item, _PLAIN_TYPES):
      raise UnsafePickleError(f"{path}: holds a {type(item).__name__}; only lists, dicts, strings "
                              "and numbers are accepted")
    if isinstance(item, dict):
      stack.extend(item.keys())
      stack.extend(item.values())
    elif isinstance(item, list):
      stack.extend(item)
  return value
