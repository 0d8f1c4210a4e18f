"""The HTML report page of a surface (``SurfaceImage``) fit.

:func:`daskglm.reporting.report.make_glm_report` hands surface fits here.
The page has the volume report's layout and templates: parameters, the mask
(vertex counts per mesh part), design matrices, AR(1) coefficients, and per
contrast its matrix, the thresholded z map drawn on the fit's mesh with
nilearn's ``plot_surf_stat_map`` (lateral and medial views of each part)
and nilearn's surface cluster table.  Thresholds are nilearn's
``threshold_stats_img`` on the ``SurfaceImage`` z map.  CIFTI fits hold no
mesh and are refused (:func:`daskglm.surface.check_reportable`).
"""

from __future__ import annotations

import html
import json
import warnings

import numpy as np
import pandas as pd

from .._version import __version__
from . import _templates, plotting

__all__ = ["surface_report_page"]

VIEWS = ("lateral", "medial")


def _fig(fig, alt: str, css: str) -> str:
    uri = plotting.figure_to_data_uri(fig, "png")
    return f'<img class="{css}" src="{uri}" alt="{html.escape(alt, quote=True)}">'


def _surface_figure(z_img, threshold: float, title: str):
    """One row per mesh part, one column per view, of a thresholded z map."""
    import matplotlib.pyplot as plt
    from nilearn.plotting import plot_surf_stat_map

    parts = list(z_img.mesh.parts)
    fig, axes = plt.subplots(len(parts), len(VIEWS), subplot_kw={"projection": "3d"},
                             figsize=(3.2 * len(VIEWS), 2.8 * len(parts)), squeeze=False)
    finite = bool(np.isfinite(threshold))
    for i, part in enumerate(parts):
        for j, view in enumerate(VIEWS):
            plot_surf_stat_map(stat_map=z_img, hemi=part, view=view, axes=axes[i, j], figure=fig,
                               threshold=threshold if finite else None, colorbar=False,
                               engine="matplotlib", title=f"{part}, {view}")
    fig.suptitle(title)
    return fig


def _threshold(result: dict, mask_img, alpha, threshold, height_control, cluster_threshold,
               two_sided) -> None:
    from nilearn.glm import threshold_stats_img
    from nilearn.reporting import get_clusters_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result["thresholded"], result["threshold"] = threshold_stats_img(
            result["z"], mask_img, alpha=alpha, threshold=threshold, height_control=height_control,
            cluster_threshold=cluster_threshold, two_sided=two_sided,
        )
        thr = float(result["threshold"])
        result["table"] = (get_clusters_table(result["z"], thr, cluster_threshold=cluster_threshold,
                                              two_sided=two_sided) if np.isfinite(thr) else pd.DataFrame())


def _table(table: pd.DataFrame) -> str:
    if table.empty:
        return '<p class="empty">No suprathreshold cluster.</p>'
    return table.to_html(index=False, classes="clusters", float_format=lambda x: f"{x:.2f}", border=0)


def _contrast_html(model, name: str, definition, slug: str, result: dict) -> str:
    design = model.design_matrices_[0]
    matrix = _fig(plotting.plot_contrast_matrix(definition, design, title=name), f"Contrast matrix of {name}",
                  "matrix")
    thr = float(result["threshold"])
    stat = _fig(_surface_figure(result["thresholded"], thr, f"{name}, z (threshold {thr:.2f})"),
                f"Surface z map of {name}", "brain")
    clusters = 0 if result["table"].empty else int(result["table"]["Cluster ID"].astype(str).str.isdigit().sum())
    return _template("contrast.html").substitute(
        slug=slug, name=html.escape(name), definition=html.escape(str(definition)), matrices=matrix,
        images=stat, threshold=f"{thr:.3f}", table=_table(result["table"]), n_clusters=str(clusters),
    )


def _template(name: str):
    from string import Template

    return Template({"report.html": _templates.REPORT, "contrast.html": _templates.CONTRAST}[name])


def surface_report_page(model, contrasts: dict, title: str, threshold: float, alpha: float,
                        cluster_threshold: int, height_control, two_sided: bool, height_text: str) -> str:
    """The report page (HTML) of a fitted surface model.

    Parameters
    ----------
    model : daskglm.FirstLevelModel
        Fitted on ``SurfaceImage`` runs (or reopened from such a store).
    contrasts : dict
        ``name -> definition``.
    title, threshold, alpha, cluster_threshold, height_control, two_sided
        As :func:`daskglm.reporting.report.make_glm_report`.
    height_text : str
        The sentence describing the thresholds.
    """
    mask_img = model.mask_img_
    sections, nav = [], []
    for i, (name, definition) in enumerate(contrasts.items()):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*The same contrast will be used.*")
            result = {"z": model.compute_contrast(definition)}
        _threshold(result, mask_img, alpha, threshold, height_control, cluster_threshold, two_sided)
        slug = f"contrast-{i + 1}"
        sections.append(_contrast_html(model, name, definition, slug, result))
        nav.append(f'<li><a href="#{slug}">{html.escape(name)}</a></li>')
    geometry = model._state.geometry
    counts = ", ".join(
        f"{part}: {int(np.count_nonzero(mask_img.data.parts[part]))} of {size}"
        for part, size in zip(geometry.part_names, geometry.sizes)
    )
    designs = [_fig(plotting.plot_design_matrix(d, title=f"Run {i + 1}"), f"Design matrix of run {i + 1}", "matrix")
               for i, d in enumerate(model.design_matrices_)]
    params = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
                     for k, v in model.get_params().items())
    if model.get_params().get("noise_model") == "ar1":
        whitening = _fig(plotting.plot_ar_coefficients(model.labels_), "Histogram of AR(1) coefficients", "matrix")
    else:
        whitening = "<p>No AR(1) whitening.</p>"
    return _template("report.html").substitute(
        title=html.escape(title), css=_templates.CSS, nav="\n".join(nav),
        params=f'<table class="params">{params}</table>', n_runs=str(len(model.design_matrices_)),
        n_voxels=f"{model.n_elements_:,}", mask=f"<p>Surface mask, vertices per part: {html.escape(counts)}.</p>",
        designs="\n".join(designs), whitening=whitening, height=height_text, contrasts="\n".join(sections),
        version=html.escape(__version__),
    )
