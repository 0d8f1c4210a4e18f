"""Self-contained HTML report of a group (second-level) analysis: volumes or surfaces.

:func:`make_group_report` takes a fitted :class:`daskglm.SecondLevelModel`,
its contrasts and, optionally, the maps of
:func:`daskglm.non_parametric_inference` for them; it draws, over the
subjects' mean anatomy (``model.mean_img_``, or a given background): the
design matrix, each contrast's matrix, the group mask, the parametric z map
thresholded as ``height_control`` says (uncorrected ``fpr`` by default) and
its cluster table, and for the permutation results the family-wise-error
maps (voxel-level max-t, TFCE, cluster size and mass: ``-log10 p(FWE)``,
thresholded at ``fwe_alpha``) with their cluster tables.  Surface models
(``SurfaceImage`` maps) are drawn on their mesh as the first-level surface
page draws them (:mod:`daskglm.reporting.surface_report`: lateral and medial
views of each part); CIFTI maps as the first-level CIFTI page shows them: a
histogram, per-structure peak tables, and the cortex on the surfaces given as
``mesh`` (a CIFTI file holds none).  Every picture is an
embedded PNG and the page has no script (as the first-level report,
:mod:`daskglm.reporting.report`, whose page class it shares).
"""

from __future__ import annotations

import html
import warnings
from string import Template

import nibabel as nib
import numpy as np
import pandas as pd

from daskglm._version import __version__
from daskglm.errors import NotFittedError
from daskglm.io.gifti import is_surface_image
from daskglm.reporting import _templates, plotting
from daskglm.reporting.report import (
    GLMReport,
    _cluster_table_html,
    _fig_tag,
    _height_text,
    _n_clusters,
    _params_table,
    _slug,
)
from daskglm.reporting.thresholding import check_threshold_params, get_clusters_table, threshold_stats_img

__all__ = ["make_group_report", "average_images", "FWE_MAPS"]

#: Permutation results drawn: (key of the ``-log10 p(FWE)`` map, its title) in
#: :func:`daskglm.non_parametric_inference`'s names.
FWE_MAPS = (
    ("logp_max_t", "Voxel-level FWE (max t)"),
    ("logp_max_tfce", "TFCE, FWE"),
    ("logp_max_size", "Cluster size, FWE"),
    ("logp_max_mass", "Cluster mass, FWE"),
)

_PAGE = Template(_templates.GROUP_REPORT)
_CONTRAST = Template(_templates.GROUP_CONTRAST)
_PANEL = Template(_templates.GROUP_PANEL)


def average_images(images: list, target=None) -> nib.Nifti1Image | None:
    """The voxel-wise mean of 3D images (e.g. the subjects' mean EPI), on ``target``'s grid if given.

    Images on another grid than ``target`` are resampled to it (linear), as a
    background needs no more.  None for no image.
    """
    from nilearn.image import load_img, resample_to_img

    if not images:
        return None
    total = None
    ref = load_img(target) if target is not None else load_img(images[0])
    for img in images:
        img = load_img(img)
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine):
            img = resample_to_img(img, ref, interpolation="linear", force_resample=True, copy_header=True)
        data = np.asarray(img.dataobj, dtype=np.float64).reshape(ref.shape[:3])
        total = data if total is None else total + data
    return nib.Nifti1Image((total / len(images)).astype(np.float32), ref.affine)


def _named_contrasts(contrasts, design: pd.DataFrame) -> dict:
    if contrasts is None:
        if design.shape[1] != 1:
            raise ValueError("No contrast given: pass second-level contrasts (the design has "
                             f"{design.shape[1]} columns: {list(map(str, design.columns))}).")
        contrasts = [str(design.columns[0])]
    if isinstance(contrasts, dict):
        return {str(k): v for k, v in contrasts.items()}
    if isinstance(contrasts, (str, np.ndarray)):
        contrasts = [contrasts]
    return {c if isinstance(c, str) else np.array2string(np.asarray(c), separator=", "): c for c in contrasts}


def _as_vector(definition, design: pd.DataFrame) -> np.ndarray:
    from daskglm.glm.contrasts import expression_to_contrast_vector

    if isinstance(definition, str):
        return expression_to_contrast_vector(definition, [str(c) for c in design.columns])
    return np.asarray(definition, dtype=float)


def _per_contrast(nonparametric, names: list[str]) -> dict[str, dict]:
    """Permutation maps by contrast: ``{name: {key: image}}`` (one dict of images: the only contrast's)."""
    if not nonparametric:
        return {}
    if all(isinstance(v, (dict, type(None))) for v in nonparametric.values()):
        unknown = sorted(set(nonparametric) - set(names))
        if unknown:
            raise ValueError(f"Permutation results for contrasts {unknown} not in the report's {names}.")
        return {k: v for k, v in nonparametric.items() if v}
    if len(names) != 1:
        raise ValueError("Permutation maps given for one contrast, but the report has several: pass "
                         "{contrast name: {map name: image}}.")
    return {names[0]: dict(nonparametric)}


def _surviving(img, threshold: float) -> int:
    if not is_surface_image(img):
        return plotting.surviving_voxels(img, threshold)
    values = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in img.data.parts.values()])
    if not np.isfinite(threshold):
        return 0
    return int(np.count_nonzero(np.isfinite(values) & (np.abs(values) >= threshold) & (values != 0)))


def _draw(img, threshold: float, title: str, bg_img, two_sided: bool):
    if is_surface_image(img):
        if _surviving(img, threshold) == 0:
            return plotting.empty_map_figure(title, threshold, two_sided)
        from daskglm.reporting.surface_report import _surface_figure

        return _surface_figure(img, threshold, title)
    return plotting.plot_stat_map(img, bg_img=bg_img, threshold=threshold, title=title, two_sided=two_sided)


def _panel(title: str, img, threshold: float, table: pd.DataFrame, bg_img, alt: str, what: str,
           two_sided: bool, note: str = "") -> str:
    fig = _draw(img, threshold, title, bg_img, two_sided)
    empty = _surviving(img, threshold) == 0
    alt = alt + (": no voxel survives the threshold" if empty else "")
    return _PANEL.substitute(
        title=html.escape(title), note=note, image=_fig_tag(fig, alt, "png", "brain"), what=what,
        n_clusters=str(_n_clusters(table)), table=_cluster_table_html(table))


def _quiet_threshold(img, mask_img, **kwargs):
    with warnings.catch_warnings():  # an empty map is said so in the report, in words
        warnings.filterwarnings("ignore", message=".*must not exceed.*")
        warnings.filterwarnings("ignore", message="No clusters found")
        if is_surface_image(img):  # nilearn's, on the mesh (daskglm's wrapper checks volumes)
            from nilearn.glm import threshold_stats_img as nilearn_threshold

            if kwargs.get("height_control") is not None:
                kwargs["threshold"] = None
            return nilearn_threshold(img, mask_img, **kwargs)
        return threshold_stats_img(img, mask_img, **kwargs)


def _quiet_table(img, threshold: float, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():  # the report says "No suprathreshold cluster."
        warnings.filterwarnings("ignore", message="No clusters found")
        warnings.filterwarnings("ignore", message=".*must not exceed.*")
        if is_surface_image(img):
            from nilearn.reporting import get_clusters_table as nilearn_table

            if not np.isfinite(threshold):
                return pd.DataFrame()
            kwargs.pop("min_distance", None)  # sub-peaks: volumes only
            return nilearn_table(img, float(threshold), **kwargs)
        return get_clusters_table(img, float(threshold), **kwargs)


def _in_mask(img, mask_img):
    """``img`` with zeros outside the mask (volume or surface)."""
    if is_surface_image(img):
        from nilearn.surface import SurfaceImage

        return SurfaceImage(mesh=img.mesh, data={
            part: np.asarray(values, dtype=np.float32) * (np.asarray(mask_img.data.parts[part]).reshape(
                np.shape(values)) != 0) for part, values in img.data.parts.items()})
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32) * (np.asarray(mask_img.dataobj) != 0),
                           img.affine)


def _n_in_mask(mask_img) -> int:
    if is_surface_image(mask_img):
        return int(sum(np.count_nonzero(v) for v in mask_img.data.parts.values()))
    return int(np.count_nonzero(np.asarray(mask_img.dataobj)))


def _mask_html(mask_img, bg_img) -> str:
    """The group mask drawn over the background (volumes), or its vertices per mesh part (surfaces, as the
    first-level surface page says it)."""
    if is_surface_image(mask_img):
        counts = "; ".join(f"{part}: {int(np.count_nonzero(values)):,} of {np.size(values):,}"
                           for part, values in mask_img.data.parts.items())
        return f"<p>Surface mask, vertices per part: {html.escape(counts)}.</p>"
    fig = plotting.plot_mask(mask_img, bg_img=bg_img, title="Group mask")
    return _fig_tag(fig, "Group mask", "png", "brain")


def _fwe_panels(maps: dict, name: str, mask_img, bg_img, fwe_alpha: float, min_distance: float) -> list[str]:
    cut = -np.log10(fwe_alpha)
    panels = []
    for key, title in FWE_MAPS:
        if maps.get(key) is None:
            continue
        masked = _in_mask(maps[key], mask_img)
        table = _quiet_table(masked, cut, two_sided=False, min_distance=min_distance)
        table = table.rename(columns={"Peak Stat": "Peak -log10 p(FWE)"})
        panels.append(_panel(f"{name}: {title}, -log10 p (p < {fwe_alpha:g})", masked, cut, table, bg_img,
                             f"{title} map of {name}", f"-log10 p(FWE) &gt; {cut:.2f}", False))
    return panels


def make_group_report(
    model,
    contrasts=None,
    first_level_contrast=None,
    nonparametric: dict | None = None,
    stat_maps: dict | None = None,
    title: str | None = None,
    bg_img=None,
    alpha: float = 0.001,
    height_control: str | None = "fpr",
    threshold: float | None = None,
    cluster_threshold: int = 0,
    two_sided: bool = False,
    fwe_alpha: float = 0.05,
    min_distance: float = 8.0,
    mesh=None,
) -> GLMReport:
    """HTML report of a fitted second-level model (volumes, surfaces or CIFTI), with its permutation results.

    Parameters
    ----------
    model : daskglm.SecondLevelModel
        Fitted (its ``design_matrix_``, ``masker_``, ``compute_contrast``, ``mean_img_``).
    contrasts : str, array, list or dict, optional
        Second-level contrasts (``name -> definition``, or definitions named
        after themselves); default: the design's only column.
    first_level_contrast : str or array, optional
        For model and study-store inputs, as for ``compute_contrast``.
    nonparametric : dict, optional
        :func:`daskglm.non_parametric_inference` maps (``logp_max_t``,
        ``logp_max_tfce``, ``logp_max_size``, ``logp_max_mass``; others are
        ignored) of the only contrast, or ``{contrast name: maps}``.
    stat_maps : dict, optional
        Already computed z maps by contrast name (not recomputed).
    title : str, optional
    bg_img : path or Nifti1Image, optional
        Background; default the subjects' mean anatomy (``model.mean_img_``),
        or the group mask when the inputs were maps.
    alpha, height_control, threshold, cluster_threshold, two_sided
        Thresholding of the parametric z maps, as in the first-level report.
    fwe_alpha : float, default=0.05
        Family-wise error rate the permutation maps are thresholded at.
    min_distance : float, default=8.0
        Minimum distance between the cluster tables' sub-peaks, in mm.
    mesh : PolyMesh, dict or (left, right), optional
        CIFTI maps only: the surfaces their cortex lies on (a CIFTI file holds
        none; e.g. the fsLR 32k midthickness pair), to draw the cortical maps.
        Without it, CIFTI maps are shown as histograms and per-structure peak
        tables.

    Returns
    -------
    GLMReport
    """
    if not model.__sklearn_is_fitted__():
        raise NotFittedError("The model is not fitted yet; call fit() before the report.")
    check_threshold_params(alpha, threshold if height_control is None else None, height_control, cluster_threshold)
    if not 0 < fwe_alpha < 1:
        raise ValueError(f"fwe_alpha must lie in (0, 1), got {fwe_alpha!r}.")
    design = model.design_matrix_
    named = _named_contrasts(contrasts, design)
    permutation = _per_contrast(nonparametric, list(named))
    mask_img = model.masker_.mask_img_
    if _is_cifti(model):
        return _cifti_group_report(model, named, permutation, first_level_contrast, stat_maps, title, alpha,
                                   height_control, threshold, cluster_threshold, two_sided, fwe_alpha, mesh)
    if not (is_surface_image(mask_img) or isinstance(mask_img, nib.Nifti1Image)):
        raise ValueError(f"The group report draws volumes, surfaces and CIFTI maps; this model's mask is a "
                         f"{type(mask_img).__name__}.")
    background = "the given image"
    if is_surface_image(mask_img):
        bg_img, background = None, "the mesh"
    elif bg_img is None:
        bg_img = getattr(model, "mean_img_", None)
        background = "the subjects' mean anatomy (mean of their first-level mean images)"
    if bg_img is None and not is_surface_image(mask_img):
        bg_img, background = mask_img, "the group mask (the inputs carry no anatomy)"
    sections, nav, used = [], [], set()
    for name, definition in named.items():
        slug = _slug(name, used)
        if stat_maps and stat_maps.get(name) is not None:
            z_img = stat_maps[name]
        else:
            z_img = model.compute_contrast(definition, first_level_contrast=first_level_contrast,
                                           output_type="z_score")
        thresholded, z_thr = _quiet_threshold(z_img, mask_img, alpha=alpha, threshold=threshold,
                                              height_control=height_control,
                                              cluster_threshold=cluster_threshold, two_sided=two_sided)
        table = _quiet_table(z_img, z_thr, cluster_threshold=cluster_threshold, two_sided=two_sided,
                             min_distance=min_distance)
        side = "|z|" if two_sided else "z"
        panels = [_panel(f"{name}: parametric z", thresholded, z_thr, table, bg_img, f"Stat map of {name}",
                         f"{side} &gt; {z_thr:.2f}", two_sided,
                         _height_text(height_control, alpha, z_thr, cluster_threshold, two_sided))]
        panels += _fwe_panels(permutation.get(name, {}), name, mask_img, bg_img, fwe_alpha, min_distance)
        sections.append(_contrast_section(name, definition, slug, design, panels))
        nav.append(f'<li><a href="#{slug}">{html.escape(name)}</a></li>')
    params = {"subjects": int(design.shape[0]), "design columns": [str(c) for c in design.columns],
              "first-level contrast": first_level_contrast, "smoothing_fwhm": model.smoothing_fwhm,
              "background": background}
    return _page(title, nav, sections, params, design, bool(permutation), _n_in_mask(mask_img),
                 "vertices" if is_surface_image(mask_img) else "voxels", _mask_html(mask_img, bg_img))



def _is_cifti(model) -> bool:
    return isinstance(model.masker_.mask_img_, nib.Cifti2Image)


def _cifti_values(img) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float64).reshape(-1)


def _cifti_group_report(model, named: dict, permutation: dict, first_level_contrast, stat_maps, title, alpha,
                        height_control, threshold, cluster_threshold, two_sided, fwe_alpha, mesh) -> GLMReport:
    """:func:`make_group_report` of CIFTI maps (pieces of :mod:`daskglm.reporting.surface_report`)."""
    from daskglm.reporting.surface_report import _cifti_threshold, cifti_map_html, cifti_mask_html, cifti_mesh

    mask_img = model.masker_.mask_img_  # a one-map dense scalar over the maps' brain models
    brain_models = mask_img.header.get_axis(1)
    mask = np.asarray(mask_img.dataobj).reshape(-1) != 0
    mesh = None if mesh is None else cifti_mesh(mesh, brain_models)
    design = model.design_matrix_
    cut = -np.log10(fwe_alpha)
    extent = "; cluster extents are not applied to grayordinates" if cluster_threshold else ""
    sections, nav, used = [], [], set()
    for name, definition in named.items():
        slug = _slug(name, used)
        if stat_maps and stat_maps.get(name) is not None:
            z = _cifti_values(stat_maps[name])
        else:
            z = _cifti_values(model.compute_contrast(definition, first_level_contrast=first_level_contrast,
                                                     output_type="z_score"))
        thr = _cifti_threshold(z, mask, alpha, threshold, height_control, two_sided)
        body, n_above = cifti_map_html(z, mask, thr, two_sided, brain_models, mesh, name)
        side = "|z|" if two_sided else "z"
        control = f"{height_control} &lt; {alpha:g}" if height_control else f"{side} &gt; {thr:g}"
        panels = [f'<div class="panel">\n<h4>{html.escape(name)}: parametric z</h4>\n<p class="height">'
                  f"Height control: {control} ({'two' if two_sided else 'one'}-sided): {side} &gt; {thr:.2f}, "
                  f"{n_above:,} grayordinates{extent}.</p>\n{body}\n</div>"]
        for key, label in FWE_MAPS:
            img = permutation.get(name, {}).get(key)
            if img is None:
                continue
            logp = _cifti_values(img)
            body, n_above = cifti_map_html(logp, mask, cut, False, brain_models, mesh, f"{name}, {label}",
                                           stat="-log10 p(FWE)")
            panels.append(f'<div class="panel">\n<h4>{html.escape(name)}: {html.escape(label)}, -log10 p '
                          f"(p &lt; {fwe_alpha:g})</h4>\n<p class=\"height\">-log10 p(FWE) &gt; {cut:.2f}: "
                          f"{n_above:,} grayordinates.</p>\n{body}\n</div>")
        sections.append(_contrast_section(name, definition, slug, design, panels))
        nav.append(f'<li><a href="#{slug}">{html.escape(name)}</a></li>')
    params = {"subjects": int(design.shape[0]), "design columns": [str(c) for c in design.columns],
              "first-level contrast": first_level_contrast, "smoothing_fwhm": model.smoothing_fwhm,
              "mesh": "given" if mesh is not None else "none (a CIFTI file holds none)"}
    return _page(title, nav, sections, params, design, bool(permutation), int(mask.sum()), "grayordinates",
                 cifti_mask_html(mask, brain_models, mesh is not None))


def _contrast_section(name: str, definition, slug: str, design: pd.DataFrame, panels: list[str]) -> str:
    matrix = plotting.plot_contrast_matrix(_as_vector(definition, design), design, title=name)
    return _CONTRAST.substitute(
        slug=slug, name=html.escape(name), definition=html.escape(str(definition)),
        matrix=_fig_tag(matrix, f"Contrast matrix of {name}", "png", "matrix"), panels="\n".join(panels))


def _page(title, nav: list[str], sections: list[str], params: dict, design: pd.DataFrame, permuted: bool,
          n_elements: int, elements: str, mask_html: str) -> GLMReport:
    """The group report page around its contrast sections."""
    title = title or "daskglm group report"
    page = _PAGE.substitute(
        title=html.escape(title), css=_templates.CSS, nav="\n".join(nav), params=_params_table(params),
        n_subjects=str(design.shape[0]), n_voxels=f"{n_elements:,}", elements=elements, mask=mask_html,
        design=_fig_tag(plotting.plot_design_matrix(design, title="Group design"), "Group design matrix",
                        "png", "matrix"),
        contrasts="\n".join(sections),
        permutation=" Permutation (FWE) maps from non_parametric_inference." if permuted else "",
        version=html.escape(__version__))
    return GLMReport(page, title)
