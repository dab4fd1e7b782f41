"""The repository around the package: its root, and its `configs` package, importable from any
working directory.

Experiment configs are Python files that import each other (`from configs import base`). From the
repository root `configs` is found through the working directory; from anywhere else it is not
(`ModuleNotFoundError: No module named 'configs'`), or a `configs` folder of the user's would be
taken for it. `use_configs()` registers the repository's own under that name: every entry point
calls it (through `user_errors.parse_flags`) before it loads a --config.
"""

from __future__ import annotations

import importlib.util
import os
import sys

# realpath: the package may be reached through a link (a folder of installed packages).
ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def config_path(name: str) -> str:
  """The path of one of the repository's config files, e.g. config_path("tiny.py")."""
  return os.path.join(CONFIGS, name)


def use_configs() -> None:
  """Make `import configs` read the repository's configs/, whatever the working directory. A
  `configs` already imported is kept (the tests import it from the same folder)."""
  init = os.path.join(CONFIGS, "__init__.py")
  if "configs" in sys.modules or not os.path.exists(init):
    return
  spec = importlib.util.spec_from_file_location("configs", init, submodule_search_locations=[CONFIGS])
  module = importlib.util.module_from_spec(spec)
  sys.modules["configs"] = module
  spec.loader.exec_module(module)
