"""The notebooks: stored without outputs, and each runs top to bottom against a small trained and
evaluated workdir and draws its figures.

MEDPALM_M_UPDATE_NOTEBOOK_FIGURES=1 also copies one figure per notebook to notebooks/figures/,
the examples the notebooks' README shows.
"""

import json
import os
import shutil
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from tests.conftest import ROOT

NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
# notebook -> (the figures it saves, the one kept under notebooks/figures/ as an example)
NOTEBOOKS = {
    "01_data_explorer.ipynb": (("01_mixture", "01_examples", "01_pileup", "01_token_counts"), "01_pileup"),
    "02_model_inspection.ipynb": (("02_token_probabilities", "02_attention"), "02_attention"),
    "03_benchmark_results.ipynb": (("03_training_curves", "03_metrics_over_steps", "03_ours_vs_paper"),
                                   "03_ours_vs_paper"),
}
KERNEL_NAME = "medpalm-m-test"


def test_every_notebook_is_tested():
  assert sorted(f for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(name):
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  nbformat.validate(nb)
  assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
          f"{name} cell {i} has outputs: clear them before committing "
          f"(jupyter nbconvert --clear-output --inplace notebooks/{name})")


def _use_this_interpreter_as_kernel(tmp_path, monkeypatch) -> None:
  """A kernelspec that runs this interpreter, whatever a 'python3' kernelspec elsewhere names."""
  spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "medpalm_m tests", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_top_to_bottom_and_draws_its_figures(name, evaluated_workdir, synthetic_data_dir,
                                                           tmp_path, monkeypatch):
  figures_dir = tmp_path / "figures"
  monkeypatch.setenv("MEDPALM_M_WORKDIR", evaluated_workdir)
  monkeypatch.setenv("MEDPALM_M_DATA_DIR", synthetic_data_dir)
  monkeypatch.setenv("MEDPALM_M_FIGURES_DIR", str(figures_dir))
  _use_this_interpreter_as_kernel(tmp_path, monkeypatch)
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=300,
                          resources={"metadata": {"path": NOTEBOOK_DIR}})
  start = time.perf_counter()
  client.execute()  # a failing cell raises CellExecutionError with its traceback
  print(f"{name} executed in {time.perf_counter() - start:.1f}s")

  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  expected, example = NOTEBOOKS[name]
  shown = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
  assert len(shown) == len(expected), f"{len(shown)} figures displayed, expected {len(expected)}"
  assert sorted(os.listdir(figures_dir)) == sorted(f"{f}.png" for f in expected)
  for figure in expected:
    with Image.open(figures_dir / f"{figure}.png") as image:
      assert image.format == "PNG" and min(image.size) >= 150, (figure, image.size)
      assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, f"{figure} is blank"
  if os.environ.get("MEDPALM_M_UPDATE_NOTEBOOK_FIGURES"):
    os.makedirs(os.path.join(NOTEBOOK_DIR, "figures"), exist_ok=True)
    shutil.copy(figures_dir / f"{example}.png", os.path.join(NOTEBOOK_DIR, "figures", f"{example}.png"))
