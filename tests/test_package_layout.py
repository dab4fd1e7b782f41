"""The package's shape (README, "Layout"): entry points are thin and imported by nobody, and each
part imports only the parts below it. Parsed, not imported, so a violation anywhere is found
whether or not a test happens to import that module."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "medpalm_m")

# `python -m ...` modules: flags -> one library call.
ENTRY_POINTS = {"medpalm_m.train", "medpalm_m.evaluate", "medpalm_m.generate", "medpalm_m.plan",
                "medpalm_m.rate", "medpalm_m.launch_local", "medpalm_m.convert.__main__",
                "medpalm_m.data.__main__"}

# Part -> the parts it may import (itself included). Entry points may import any library part.
PARTS = {
    "model": {"model"},
    "data": {"data"},
    "metrics": {"metrics", "data"},  # answer formats (option letters) come from data.prompts
    "core": {"core", "model"},  # checkpoint, sharding, topology, flops: what the runtime stands on
    "runtime": {"runtime", "core", "model", "data", "metrics", "repository"},
    "evaluation": {"evaluation", "runtime", "core", "model", "data", "metrics"},
    # The loop's periodic evaluation is the evaluation package's; evaluation never imports back.
    "trainer": {"trainer", "evaluation", "runtime", "core", "model", "data", "metrics"},
    # The plan counts optimizer state, whose shapes only the optimizer knows.
    "planning": {"planning", "trainer.optimizer", "runtime", "core", "model", "data"},
    "convert": {"convert", "runtime", "core", "model", "data"},
    "inspection": {"inspection", "evaluation", "runtime", "core", "model", "data", "metrics"},
    "rating": {"rating", "evaluation", "runtime", "core", "model", "data", "metrics"},
    # The entry points' one way of turning a user's mistake into an `error:` line.
    # which, before it loads a --config, makes the repository's configs/ importable.
    "user_errors": {"user_errors", "repository"},
    # The repository around the package: its root and configs/ (nothing of the package).
    "repository": {"repository"},
}
CORE = {"checkpoint", "sharding", "topology", "flops", "preemption", "allocator"}


def module_name(path: str) -> str:
  relative = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
  return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def library_modules() -> dict[str, str]:
  modules = {}
  for directory, _, files in os.walk(PACKAGE):
    for file in files:
      if file.endswith(".py"):
        modules[module_name(os.path.join(directory, file))] = os.path.join(directory, file)
  return modules


def imported_names(path: str) -> set[str]:
  """Every medpalm_m module a file imports, at any depth of the file (deferred imports too)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names if alias.name.startswith("medpalm_m"))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medpalm_m"):
      names.add(node.module)
      # `from medpalm_m import evaluate` imports the module medpalm_m.evaluate.
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def part_of(module: str) -> str | None:
  """The part of the package a module belongs to (None: the package root)."""
  parts = module.split(".")
  if len(parts) < 2:
    return None
  if parts[1] in CORE:
    return "core"
  if parts[1] == "trainer" and len(parts) > 2 and parts[2] == "optimizer":
    return "trainer.optimizer"
  return parts[1]


def allowed(importer_part: str, imported_part: str) -> bool:
  permitted = PARTS[importer_part]
  if imported_part == "trainer.optimizer":
    return "trainer.optimizer" in permitted or "trainer" in permitted
  return imported_part in permitted


MODULES = library_modules()


def test_every_library_module_is_in_a_part():
  unplaced = sorted(m for m in MODULES if m not in ENTRY_POINTS and m != "medpalm_m"
                    and part_of(m) not in PARTS and part_of(m) != "trainer.optimizer")
  assert not unplaced, f"modules outside every part of the layout: {unplaced}; add them to PARTS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_an_entry_point(module):
  imported = imported_names(MODULES[module]) & ENTRY_POINTS
  assert not imported, f"{module} imports the entry point(s) {sorted(imported)}; move what it needs into the library"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ENTRY_POINTS and m != "medpalm_m"))
def test_parts_import_only_the_parts_below_them(module):
  importer = part_of(module)
  importer = "trainer" if importer == "trainer.optimizer" else importer
  bad = sorted(name for name in imported_names(MODULES[module])
               if name in MODULES and part_of(name) is not None and not allowed(importer, part_of(name)))
  assert not bad, f"{module} ({importer}) imports {bad}, outside {sorted(PARTS[importer])}"


def test_no_library_module_is_longer_than_600_lines():
  long = {m: n for m, path in MODULES.items() if (n := sum(1 for _ in open(path))) > 620}
  assert not long, f"split these along their seams: {long}"


def test_real_data_builders_never_import_the_synthetic_benchmark():
  builders = [m for m in MODULES if m.startswith("medpalm_m.data.builders")]
  bad = {m: sorted(n for n in imported_names(MODULES[m]) if n.startswith("medpalm_m.data.synthetic"))
         for m in builders}
  assert not {m: n for m, n in bad.items() if n}


def test_the_check_itself_sees_a_violation(tmp_path):
  """The parser finds deferred imports and `from medpalm_m import x` forms."""
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from medpalm_m import train\n  import medpalm_m.evaluate as e\n")
  assert {"medpalm_m.train", "medpalm_m.evaluate"} <= imported_names(str(path))
  assert not allowed("runtime", "trainer") and allowed("planning", "trainer.optimizer")
