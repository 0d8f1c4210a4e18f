"""Plots and HTML reports of first- and second-level fits, thresholds and cluster tables.

- :mod:`daskglm.reporting.plotting`: stat maps, glass brains, design and
  contrast matrices, mask and whitening diagnostics (nilearn.plotting on
  exported images, on Agg canvases);
- :mod:`daskglm.reporting.report`: :func:`make_glm_report`, a single
  self-contained HTML file;
- :mod:`daskglm.reporting.surface_report`: the report page of a surface
  (``SurfaceImage``) fit;
- :mod:`daskglm.reporting.group_report`: :func:`~daskglm.reporting.group_report.make_group_report`,
  the report of a second-level model and its permutation (FWE, TFCE) maps;
- :mod:`daskglm.reporting._templates`: the report's HTML and CSS templates;
- :mod:`daskglm.reporting.thresholding`: height control, cluster extent and
  cluster tables of statistical maps (images);
- :mod:`daskglm.reporting.tables`: :func:`cluster_table_from_store`, cluster
  tables computed lazily from a stored fit.
"""

from __future__ import annotations

from daskglm.reporting.report import GLMReport, make_glm_report, normalize_contrasts

__all__ = ["GLMReport", "make_glm_report", "normalize_contrasts"]
