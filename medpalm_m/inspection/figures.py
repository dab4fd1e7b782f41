"""Notebook figures kept as PNG files, for the test suite and for docs.

`save` writes only when MEDPALM_M_FIGURES_DIR names a folder, so running a notebook by hand
leaves nothing behind; the figure is shown by the notebook either way.
"""

from __future__ import annotations

import os

from matplotlib.figure import Figure

FIGURES_DIR_VARIABLE = "MEDPALM_M_FIGURES_DIR"


def save(fig: Figure, name: str) -> None:
  """Write `fig` to $MEDPALM_M_FIGURES_DIR/name.png when that variable is set."""
  directory = os.environ.get(FIGURES_DIR_VARIABLE)
  if not directory:
    return
  os.makedirs(directory, exist_ok=True)
  fig.savefig(os.path.join(directory, f"{name}.png"), dpi=90, bbox_inches="tight")
