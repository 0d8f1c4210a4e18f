"""Self-contained HTML report of a first-level fit.

:func:`make_glm_report` is what :meth:`daskglm.FirstLevelModel.generate_report`
calls.  nilearn's own ``make_glm_report`` inspects nilearn model internals, so
the report is rebuilt here with plain :class:`string.Template` HTML: model
parameters, the mask, design matrices, whitening diagnostics, contrast
matrices, and per contrast the thresholded stat map (optionally a glass
brain) and the cluster table.  All images are embedded as base64 PNG
``data:`` URIs and there is no script, so the single file opens anywhere,
offline.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import warnings
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import dask
import numpy as np
import pandas as pd

from daskglm._version import __version__
from daskglm.errors import NotFittedError
from daskglm.graph.resources import compute
from daskglm.io.export import unmask
from daskglm.reporting import _templates, plotting
from daskglm.reporting.thresholding import check_threshold_params, get_clusters_table, threshold_stats_img

__all__ = ["GLMReport", "make_glm_report", "nilearn_report", "normalize_contrasts", "contrast_z_map"]

_TEMPLATES = {
    "report.html": Template(_templates.REPORT),
    "contrast.html": Template(_templates.CONTRAST),
}


def _template(name: str) -> Template:
    return _TEMPLATES[name]


class GLMReport:
    """An HTML report, with nilearn ``HTMLReport``'s methods.

    Parameters
    ----------
    html_text : str
        The complete, self-contained document.
    title : str
    """

    def __init__(self, html_text: str, title: str = "daskglm report"):
        self._html = html_text
        self.title = title
        self.width, self.height = 960, 800

    def resize(self, width: int, height: int) -> GLMReport:
        """Set the size of the report's iframe (nilearn's ``report_dims``)."""
        self.width, self.height = int(width), int(height)
        return self

    def get_standalone(self) -> str:
        """The whole HTML document."""
        return self._html

    def __str__(self) -> str:
        return self._html

    def save_as_html(self, file_path: str | os.PathLike) -> str:
        """Write the report to ``file_path`` (UTF-8) and return the path."""
        path = Path(file_path)
        if not path.parent.exists():
            raise FileNotFoundError(f"The folder {str(path.parent)!r} does not exist.")
        path.write_text(self._html, encoding="utf-8")
        return os.fspath(path)

    def open_in_browser(self, file_name: str | os.PathLike | None = None) -> str:
        """Save the report (to a temporary file by default) and open it in a web browser."""
        if file_name is None:
            fd, file_name = tempfile.mkstemp(suffix=".html", prefix="daskglm_report_")
            os.close(fd)
        path = self.save_as_html(file_name)
        webbrowser.open(Path(path).resolve().as_uri())
        return path

    def get_iframe(self, width: int | None = None, height: int | None = None) -> str:
        """The report inside an ``<iframe srcdoc=...>``, for notebooks (default size: :meth:`resize`'s)."""
        width = self.width if width is None else width
        height = self.height if height is None else height
        return (
            f'<iframe srcdoc="{html.escape(self._html, quote=True)}" width="{int(width)}" '
            f'height="{int(height)}" frameborder="0"></iframe>'
        )

    def _repr_html_(self) -> str:
        return self.get_iframe()


@dataclass
class _ContrastResult:
    name: str
    definition: Any
    z_img: Any
    thresholded: Any = None
    threshold: float = float("nan")
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def contrast_z_map(model, contrast_def, stat_type: str | None = None):
    """Lazy z map of a contrast: a :class:`dask.delayed.Delayed` of a Nifti1Image.

    Parameters
    ----------
    model : daskglm.FirstLevelModel
        A fitted model, or one reopened with :func:`daskglm.open_model`.
    contrast_def : str, array or list
        As for :meth:`~daskglm.FirstLevelModel.compute_contrast`.
    stat_type : {None, 't', 'F'}
    """
    z = model.contrast_maps(contrast_def, stat_type)["z_score"].data
    mask = np.asarray(model.mask_img_.dataobj) != 0
    return dask.delayed(unmask, pure=True)(z, mask, model.mask_img_.affine, "z_score")


def normalize_contrasts(contrasts) -> dict[str, Any]:
    """Contrasts as a dict ``name -> definition``, as nilearn's report accepts them.

    A dict is kept; a string or array is one contrast named after itself; in a
    list or tuple each item is a contrast, except a flat list of numbers,
    which is one vector.
    """
    if contrasts is None:
        raise ValueError("No contrast given: pass a dict name -> contrast, a list or a string.")
    if isinstance(contrasts, dict):
        if not contrasts:
            raise ValueError("The contrasts dict is empty.")
        return {str(k): v for k, v in contrasts.items()}
    if isinstance(contrasts, (str, np.ndarray)):
        return {_contrast_name(contrasts): contrasts}
    if isinstance(contrasts, (list, tuple)):
        if not contrasts:
            raise ValueError("The contrasts list is empty.")
        if all(np.isscalar(c) and not isinstance(c, str) for c in contrasts):
            return {_contrast_name(contrasts): np.asarray(contrasts, dtype=float)}
        return {_contrast_name(c): c for c in contrasts}
    raise TypeError(
        "contrasts must be a dict name -> contrast, a list, a string or an array, "
        f"got {type(contrasts).__name__}."
    )


def _contrast_name(con) -> str:
    if isinstance(con, str):
        return con
    try:
        arr = np.asarray(con, dtype=float)
    except (TypeError, ValueError):
        return str(con)
    return np.array2string(arr, separator=", ", max_line_width=10_000,
                           formatter={"float_kind": lambda x: f"{x:g}"}).replace("\n", "")


def _slug(name: str, used: set[str]) -> str:
    base = "c-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "contrast")
    slug, k = base, 1
    while slug in used:
        k += 1
        slug = f"{base}-{k}"
    used.add(slug)
    return slug


def _img_tag(uri: str, alt: str, css: str = "") -> str:
    return f'<img class="{css}" src="{uri}" alt="{html.escape(alt, quote=True)}">'


def _fig_tag(fig, alt: str, fmt: str = "png", css: str = "") -> str:
    return _img_tag(plotting.figure_to_data_uri(fig, fmt), alt, css)


def _params_table(params: dict) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
        for k, v in params.items()
    )
    return f'<table class="params">{rows}</table>'


def _cluster_table_html(table: pd.DataFrame) -> str:
    if table.empty:
        return '<p class="empty">No suprathreshold cluster.</p>'
    return table.to_html(index=False, classes="clusters", float_format=lambda x: f"{x:.2f}",
                         border=0, escape=True)


def _default_background(model):
    """The mean image of the fit (``model.mean_img_``), or None for old stores."""
    return model.mean_img_


def _compute_contrasts(model, contrasts: dict, z_maps: dict | None = None) -> list[_ContrastResult]:
    """The contrasts' z maps: those given in ``z_maps`` (by name), the others computed in one pass."""
    z_maps = {name: z for name, z in (z_maps or {}).items() if z is not None}
    todo = [name for name in contrasts if name not in z_maps]
    if todo:
        z_maps.update(zip(todo, compute(*[contrast_z_map(model, contrasts[name]) for name in todo])))
    return [_ContrastResult(name, contrasts[name], z_maps[name]) for name in contrasts]


def _threshold_all(results, mask_img, alpha, threshold, height_control, cluster_threshold,
                   two_sided, min_distance) -> None:
    for res in results:
        with warnings.catch_warnings():  # the report says in words that no voxel survives
            warnings.filterwarnings("ignore", message=".*must not exceed.*")
            res.thresholded, res.threshold = threshold_stats_img(
                res.z_img, mask_img, alpha=alpha, threshold=threshold, height_control=height_control,
                cluster_threshold=cluster_threshold, two_sided=two_sided,
            )
        with warnings.catch_warnings():  # the report says so itself
            warnings.filterwarnings("ignore", message="No clusters found")
            warnings.filterwarnings("ignore", message=".*must not exceed.*")
            res.table = get_clusters_table(
                res.z_img, float(res.threshold), cluster_threshold=cluster_threshold,
                two_sided=two_sided, min_distance=min_distance,
            )


def _contrast_matrices_html(model, res: _ContrastResult) -> str:
    designs = model.design_matrices_
    per_run = isinstance(res.definition, (list, tuple)) and len(res.definition) == len(designs) \
        and len(designs) > 1 and not all(np.isscalar(c) for c in res.definition)
    same = all(d.columns.equals(designs[0].columns) for d in designs)
    if per_run or not same:
        defs = res.definition if per_run else [res.definition] * len(designs)
        items = [(f"run {i + 1}", d, designs[i]) for i, d in enumerate(defs)]
    else:
        items = [("all runs", res.definition, designs[0])]
    tags = []
    for label, con, design in items:
        fig = plotting.plot_contrast_matrix(con, design, title=f"{res.name} ({label})")
        tags.append(_fig_tag(fig, f"Contrast matrix of {res.name}, {label}", "png", "matrix"))
    return "\n".join(tags)


def _height_text(height_control, alpha, threshold, cluster_threshold, two_sided) -> str:
    if height_control is None:
        text = f"|z| &gt; {threshold:g}" if two_sided else f"z &gt; {threshold:g}"
    else:
        text = f"{height_control} &lt; {alpha:g}"
    sides = "two-sided" if two_sided else "one-sided"
    return f"Height control: {text} ({sides}); cluster extent &ge; {int(cluster_threshold)} voxels."


def _n_clusters(table: pd.DataFrame) -> int:
    """Clusters (not sub-peaks, whose IDs carry a letter) in a cluster table."""
    if table.empty:
        return 0
    return int(table["Cluster ID"].astype(str).str.isdigit().sum())


def _contrast_section(model, res: _ContrastResult, slug: str, bg_img, glass_brain: bool,
                      cut_coords, display_mode: str, two_sided: bool) -> str:
    # an infinite (e.g. FDR) threshold or an empty map gives a figure saying so in words
    stat_fig = plotting.plot_stat_map(
        res.thresholded, bg_img=bg_img, threshold=res.threshold,
        title=f"{res.name}, z (threshold {res.threshold:.2f})", cut_coords=cut_coords,
        display_mode=display_mode, two_sided=two_sided,
    )
    empty = plotting.surviving_voxels(res.thresholded, res.threshold) == 0
    alt = f"Stat map of {res.name}" + (": no voxel survives the threshold" if empty else "")
    images = [_fig_tag(stat_fig, alt, "png", "brain")]
    if glass_brain:
        recentre = _far_from_template(res.thresholded)
        title = f"{res.name}, glass brain" + (" (field of view recentred on 0 mm)" if recentre else "")
        glass = plotting.plot_glass_brain(res.thresholded, threshold=res.threshold, title=title,
                                          two_sided=two_sided, recentre=recentre)
        images.append(_fig_tag(glass, f"Glass brain of {res.name}", "png", "brain"))
    return _template("contrast.html").substitute(
        slug=slug,
        name=html.escape(res.name),
        definition=html.escape(_contrast_name(res.definition)),
        matrices=_contrast_matrices_html(model, res),
        images="\n".join(images),
        threshold=f"{res.threshold:.3f}",
        table=_cluster_table_html(res.table),
        n_clusters=str(_n_clusters(res.table)),
    )


#: Distance (mm) of the field of view's centre from 0 mm beyond which the data are taken to be in
#: scanner coordinates, not in a template space: the glass brain is then drawn recentred.
TEMPLATE_DISTANCE_MM = 40.0


def _far_from_template(img) -> bool:
    """Whether the image's field of view is centred far from 0 mm (scanner, not MNI, coordinates)."""
    shape = np.asarray(img.shape[:3])
    centre = img.affine[:3, :3] @ ((shape - 1) / 2) + img.affine[:3, 3]
    return bool(np.linalg.norm(centre) > TEMPLATE_DISTANCE_MM)


def _design_section(model) -> str:
    tags = []
    for i, design in enumerate(model.design_matrices_):
        fig = plotting.plot_design_matrix(design, title=f"Run {i + 1}")
        tags.append(_fig_tag(fig, f"Design matrix of run {i + 1}", "png", "matrix"))
    return "\n".join(tags)


def _whitening_section(model) -> str:
    if model.get_params().get("noise_model") != "ar1":
        return "<p>OLS fit: no whitening.</p>"
    fig = plotting.plot_ar_coefficients(model.labels_)
    return _fig_tag(fig, "Histogram of AR(1) coefficients", "png", "matrix")


def make_glm_report(
    model,
    contrasts,
    title: str | None = None,
    bg_img=None,
    threshold: float = 3.09,
    alpha: float = 0.001,
    cluster_threshold: int = 0,
    height_control: str | None = "fpr",
    two_sided: bool = False,
    min_distance: float = 8.0,
    cut_coords=None,
    display_mode: str = "ortho",
    glass_brain: bool = False,
    z_maps: dict | None = None,
    **kwargs,
) -> GLMReport:
    """Build the HTML report of a fitted (or reopened) model.

    Parameters
    ----------
    model : daskglm.FirstLevelModel
        Fitted, or reopened with :func:`daskglm.open_model`.
    contrasts : dict, list, str or array
        ``name -> definition`` (as for ``compute_contrast``), or a list of
        definitions, or one definition.
    title : str, optional
        Report title (default: "daskglm first-level report").
    bg_img : path, Nifti1Image or None
        Background of the stat maps and of the mask.  ``None`` uses the fit's
        mean image (each in-mask voxel's signal mean, computed in the fit's
        streaming pass and kept in the store, averaged over runs), or the mask
        for fits without it: maps are always shown in the whole brain.
    threshold : float, default=3.09
        z threshold, used when ``height_control`` is None.
    alpha : float, default=0.001
        Error rate for ``height_control`` 'fpr', 'fdr' or 'bonferroni'.
    cluster_threshold : int, default=0
        Minimum cluster size, in voxels.
    height_control : {'fpr', 'fdr', 'bonferroni', None}, default='fpr'
    two_sided : bool, default=False
        Threshold and tabulate negative values too.
    min_distance : float, default=8.0
        Minimum distance between sub-peaks of the cluster tables, in mm.
    cut_coords : sequence of float, optional
        Cuts of the stat maps (default: at each map's peak).
    display_mode : str, default='ortho'
        nilearn display mode of the stat maps.
    glass_brain : bool, default=False
        Add a glass-brain view per contrast (about 2 s each to draw).
    z_maps : dict, optional
        z maps already computed, by contrast name (volumes; not recomputed).
    **kwargs
        ``mesh``: the surfaces of a CIFTI fit's cortex (``(left, right)``
        ``.surf.gii`` files or a nilearn ``PolyMesh``), to draw its maps
        (:mod:`daskglm.reporting.surface_report`).  nilearn report
        arguments without an equivalent here (``plot_type``,
        ``report_dims``, ...) are accepted and ignored.

    Returns
    -------
    GLMReport
    """
    if not model.__sklearn_is_fitted__():
        raise NotFittedError("The model is not fitted yet; call fit() before generate_report().")
    check_threshold_params(alpha, threshold, height_control, cluster_threshold)
    if contrasts is None:  # nilearn's report without contrasts, and its warning
        warnings.warn("No contrast passed during report generation.", UserWarning, stacklevel=3)
        contrasts = {}
    else:
        contrasts = normalize_contrasts(contrasts)
    title = title or "daskglm first-level report"
    if model.space_.kind != "volume":  # SurfaceImage fits on their mesh; CIFTI fits on mesh= if given
        from daskglm.reporting.surface_report import surface_report_page

        height = _height_text(height_control, alpha, threshold, cluster_threshold, two_sided)
        return GLMReport(surface_report_page(model, contrasts, title, threshold, alpha, cluster_threshold,
                                             height_control, two_sided, height, mesh=kwargs.get("mesh")), title)
    if bg_img is None:
        bg_img = _default_background(model)
    if bg_img is None:  # the whole brain as context, rather than a crop around the clusters
        bg_img = model.mask_img_
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*padded with zeros.*")
        warnings.filterwarnings("ignore", message=".*The same contrast will be used.*")
        results = _compute_contrasts(model, contrasts, z_maps)
    _threshold_all(results, model.mask_img_, alpha, threshold, height_control, cluster_threshold,
                   two_sided, min_distance)
    used: set[str] = set()
    slugs = [_slug(r.name, used) for r in results]
    sections = [
        _contrast_section(model, r, s, bg_img, glass_brain, cut_coords, display_mode, two_sided)
        for r, s in zip(results, slugs)
    ]
    nav = "\n".join(
        f'<li><a href="#{s}">{html.escape(r.name)}</a></li>' for r, s in zip(results, slugs)
    )
    mask_fig = plotting.plot_mask(model.mask_img_, bg_img=bg_img)
    n_voxels = int(np.count_nonzero(np.asarray(model.mask_img_.dataobj)))
    page = _template("report.html").substitute(
        title=html.escape(title),
        css=_templates.CSS,
        nav=nav,
        params=_params_table(model.get_params()),
        n_runs=str(len(model.design_matrices_)),
        n_voxels=f"{n_voxels:,}",
        mask=_fig_tag(mask_fig, "Analysis mask", "png", "brain"),
        designs=_design_section(model),
        whitening=_whitening_section(model),
        height=_height_text(height_control, alpha, threshold, cluster_threshold, two_sided),
        contrasts="\n".join(sections),
        version=html.escape(__version__),
    )
    return GLMReport(page, title)


#: nilearn's ``plot_type`` values: ``"glass"`` draws glass brains (here beside the slices).
PLOT_TYPES = ("slice", "glass")


def nilearn_report(model, contrasts=None, first_level_contrast=None, title: str | None = None, bg_img=None,
                   threshold: float = 3.09, alpha: float = 0.001, cluster_threshold: int = 0,
                   height_control: str | None = "fpr", two_sided: bool = False, min_distance: float = 8.0,
                   plot_type: str = "slice", cut_coords=None, display_mode: str | None = None,
                   report_dims=(1600, 800), **kwargs) -> GLMReport:
    """:func:`make_glm_report` with the arguments of nilearn's ``generate_report``.

    What nilearn's ``make_glm_report`` and ``save_glm_to_bids`` pass:
    ``bg_img="MNI152TEMPLATE"`` is nilearn's template (volumes; none for
    surfaces, as nilearn), ``plot_type="glass"`` adds glass brains,
    ``display_mode=None`` is ``'ortho'``, ``report_dims`` sizes the iframe;
    ``first_level_contrast`` is ignored with nilearn's warning.  Other
    keywords go to :func:`make_glm_report`.
    """
    from daskglm.compat.nilearn import check_parameter_in_allowed, mni152_plotting_template

    if first_level_contrast is not None:
        warnings.warn("'first_level_contrast' is ignored for FirstLevelModel.Setting first_level_contrast=None.",
                      UserWarning, stacklevel=3)
    check_parameter_in_allowed(plot_type, list(PLOT_TYPES), "plot_type")
    if min_distance < 0:
        raise ValueError(f"'min_distance' must be > 0. Got {min_distance=}")
    if isinstance(bg_img, str) and bg_img == "MNI152TEMPLATE":
        bg_img = mni152_plotting_template() if model.space_.kind == "volume" else None
    glass_brain = bool(kwargs.pop("glass_brain", False)) or plot_type == "glass"
    report = make_glm_report(model, contrasts, title=title, bg_img=bg_img, threshold=threshold, alpha=alpha,
                             cluster_threshold=cluster_threshold, height_control=height_control,
                             two_sided=two_sided, min_distance=min_distance, cut_coords=cut_coords,
                             display_mode=display_mode or "ortho", glass_brain=glass_brain, **kwargs)
    return report.resize(*report_dims)
