"""The views behind notebooks/: data, model internals and results, drawn with matplotlib.

One module per view: `workdir` finds and reads a training workdir, `data` the examples a mixture
produces, `attention` what the model answers and where it looks meanwhile, `results` training
curves and the benchmark beside the paper. `figures.save` keeps a figure as PNG when
MEDPALM_M_FIGURES_DIR is set.
"""
