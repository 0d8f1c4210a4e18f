"""The HTML report page of a surface (``SurfaceImage``) fit.

:func:`daskglm.reporting.report.make_glm_report` hands surface fits here.
The page has the volume report's layout and templates: parameters, the mask
(vertex counts per mesh part), design matrices, AR(1) coefficients, and per
contrast its matrix, the thresholded z map drawn on the fit's mesh with
nilearn's ``plot_surf_stat_map`` (lateral and medial views of each part)
and nilearn's surface cluster table.  Thresholds are nilearn's
``threshold_stats_img`` on the ``SurfaceImage`` z map.

CIFTI fits (:func:`cifti_report_page`) hold no mesh.  Their page has the
same sections; per contrast, the height threshold is nilearn's
(``threshold_stats_img`` on the grayordinates), with a histogram of the z
values, a table per CIFTI brain structure (grayordinates in the mask, above
the threshold, peak) and the strongest grayordinates of each structure
(vertex index, or voxel indices and mm coordinates).  Given a mesh
(``mesh=``: the surfaces of the cortical structures, e.g. the fsLR
``.surf.gii`` pair), the cortical maps are also drawn with
``plot_surf_stat_map``; without one the page says so.  Cluster extents need
a topology the grayordinates lack: ``cluster_threshold`` is not applied to
CIFTI maps (the page says so).
"""

from __future__ import annotations

import html
import json
import warnings

import numpy as np
import pandas as pd

from daskglm._version import __version__
from daskglm.reporting import _templates, plotting

__all__ = ["surface_report_page", "cifti_report_page", "cifti_mesh", "cifti_mask_html", "cifti_map_html"]

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
                        cluster_threshold: int, height_control, two_sided: bool, height_text: str,
                        mesh=None) -> str:
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
    mesh : optional
        CIFTI fits only (:func:`cifti_report_page`): the surfaces of their cortex.
    """
    if model.space_.kind == "cifti":
        return cifti_report_page(model, contrasts, title, threshold, alpha, cluster_threshold, height_control,
                                 two_sided, height_text, mesh=mesh)
    if mesh is not None:
        from daskglm.errors import SurfaceInputError

        raise SurfaceInputError("mesh= is for CIFTI fits; a surface fit is drawn on its own mesh.")
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
    geometry = model.space_.geometry
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


# ---------------------------------------------------------------- CIFTI fits
#: CIFTI cortical structures drawn on the mesh parts of the same name
CORTEX = {"CIFTI_STRUCTURE_CORTEX_LEFT": "left", "CIFTI_STRUCTURE_CORTEX_RIGHT": "right"}
#: strongest grayordinates listed per structure
TOP = 5
NO_MESH = ("Surface panels need a mesh: a CIFTI file holds none. Pass the surfaces its cortex lies on "
           "(e.g. the fsLR 32k midthickness pair) as <code>generate_report(..., mesh=(left, right))</code> "
           "or <code>daskglm report --mesh LEFT.surf.gii RIGHT.surf.gii</code>.")


def cifti_mesh(mesh, brain_models):
    """The surfaces of CIFTI maps as a nilearn ``PolyMesh`` whose parts match their cortical structures.

    Used for the report's surface panels and for group TFCE / cluster inference; the messages name
    neither.

    Parameters
    ----------
    mesh : PolyMesh, dict or sequence
        A ``PolyMesh``; ``{"left": ..., "right": ...}``; or ``(left, right)``
        (``.surf.gii`` paths or nilearn meshes).
    brain_models : nibabel.cifti2.BrainModelAxis

    Raises
    ------
    SurfaceInputError
        The maps have no cortical structure, or a part's vertex count is not the
        structure's (``BrainModelAxis.nvertices``).
    """
    from nilearn.surface import PolyMesh

    from daskglm.errors import SurfaceInputError

    if not isinstance(mesh, PolyMesh):
        if isinstance(mesh, dict):
            parts = mesh
        elif isinstance(mesh, (list, tuple)) and len(mesh) == 2:
            parts = dict(zip(("left", "right"), mesh))
        else:
            raise SurfaceInputError("mesh must be a nilearn PolyMesh, {'left': ..., 'right': ...} or a "
                                    f"(left, right) pair of .surf.gii files, got {type(mesh).__name__}.")
        try:
            mesh = PolyMesh(**parts)
        except Exception as err:  # nibabel / nilearn: not a surface
            raise SurfaceInputError(f"The mesh cannot be loaded: {err}") from err
    wanted = {CORTEX[s]: n for s, n in brain_models.nvertices.items() if s in CORTEX}
    if not wanted:
        raise SurfaceInputError("The CIFTI maps have no cortical surface structure to put on a mesh.")
    for part, n in wanted.items():
        if part not in mesh.parts:
            raise SurfaceInputError(f"The mesh has no {part} part; the CIFTI {part} cortex needs one ({n} vertices).")
        if mesh.parts[part].n_vertices != n:
            raise SurfaceInputError(f"The mesh's {part} part has {mesh.parts[part].n_vertices} vertices, "
                                    f"the CIFTI {part} cortex {n} (a mesh of another density?).")
    return PolyMesh(**{p: mesh.parts[p] for p in wanted})


def _short(structure: str) -> str:
    return structure.removeprefix("CIFTI_STRUCTURE_")


def _structures(brain_models):
    for name, sl, sub in brain_models.iter_structures():
        yield name, slice(*sl.indices(len(brain_models))[:2]), sub


def _cifti_threshold(z: np.ndarray, mask: np.ndarray, alpha, threshold, height_control, two_sided) -> float:
    """nilearn's height threshold (``threshold_stats_img``) on the in-mask grayordinates."""
    import nibabel as nib
    from nilearn.glm import threshold_stats_img

    as_img = lambda v, dtype: nib.Nifti1Image(np.asarray(v, dtype).reshape(-1, 1, 1), np.eye(4))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, thr = threshold_stats_img(as_img(z, np.float64), as_img(mask, np.int8), alpha=alpha, threshold=threshold,
                                     height_control=height_control, cluster_threshold=0, two_sided=two_sided)
    return float(thr)


def _where(sub, i: int, brain_models) -> str:
    if sub.surface_mask[i]:
        return f"vertex {int(sub.vertex[i])}"
    ijk = np.asarray(sub.voxel[i])
    xyz = brain_models.affine[:3, :3] @ ijk + brain_models.affine[:3, 3]
    return f"voxel ({', '.join(map(str, ijk))}), ({', '.join(f'{v:.1f}' for v in xyz)}) mm"


def _cifti_tables(z: np.ndarray, mask: np.ndarray, thr: float, two_sided: bool, brain_models,
                  stat: str = "z") -> tuple[str, int]:
    """Per structure: counts and peak; then its strongest grayordinates.  Also the suprathreshold count.

    ``stat`` names the values in the tables' headers (``z``, ``-log10 p(FWE)``).
    """
    rows, top, total = [], [], 0
    finite = bool(np.isfinite(thr))
    for name, sl, sub in _structures(brain_models):
        values, inside = z[sl], mask[sl]
        score = np.where(inside, np.abs(values) if two_sided else values, -np.inf)
        above = int(np.count_nonzero(inside & (score >= thr))) if finite else 0
        total += above
        row = {"structure": _short(name), "grayordinates": int(sl.stop - sl.start), "in mask": int(inside.sum()),
               "above threshold": above, f"peak {stat}": np.nan, "peak at": ""}
        if inside.any():
            best = int(np.argmax(score))
            row[f"peak {stat}"], row["peak at"] = float(values[best]), _where(sub, best, brain_models)
            if above:
                order = np.argsort(-score, kind="stable")[: min(TOP, above)]
                top += [{"structure": _short(name), stat: float(values[i]), "at": _where(sub, int(i), brain_models)}
                        for i in order]
        rows.append(row)
    fmt = {"float_format": lambda x: f"{x:.2f}", "border": 0, "index": False, "classes": "clusters"}
    summary = pd.DataFrame(rows).to_html(**fmt)
    strongest = (pd.DataFrame(top).to_html(**fmt) if top else
                 '<p class="empty">No grayordinate above the threshold.</p>')
    text = (f"<h4>Brain structures</h4>{summary}<h4>Strongest grayordinates (up to {TOP} per structure)</h4>"
            f"{strongest}")
    return text, total


def _histogram(z: np.ndarray, thr: float, two_sided: bool, name: str, stat: str = "z"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 2.8))
    ax.hist(z[np.isfinite(z)], bins=80, color="#4a6f94")
    if np.isfinite(thr):
        for line in ((thr, -thr) if two_sided else (thr,)):
            ax.axvline(line, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel(stat)
    ax.set_ylabel("grayordinates")
    ax.set_title(f"{name}: {stat} values in the mask")
    fig.tight_layout()
    return fig


def _cifti_surface_figure(z: np.ndarray, thr: float, mesh, brain_models, title: str):
    from nilearn.surface import SurfaceImage

    data = {p: np.zeros(mesh.parts[p].n_vertices) for p in mesh.parts}
    for name, sl, sub in _structures(brain_models):
        if name in CORTEX and CORTEX[name] in data:
            data[CORTEX[name]][np.asarray(sub.vertex)] = z[sl]
    return _surface_figure(SurfaceImage(mesh=mesh, data=data), thr, title)


def _cifti_contrast_html(model, name, definition, slug, z, mask, thr, two_sided, mesh, cluster_note) -> str:
    geometry = model.space_.geometry
    matrix = _fig(plotting.plot_contrast_matrix(definition, model.design_matrices_[0], title=name),
                  f"Contrast matrix of {name}", "matrix")
    body, n_above = cifti_map_html(z, mask, thr, two_sided, geometry.brain_models, mesh, name)
    return (f'<article class="contrast" id="{slug}">\n<h3>{html.escape(name)}</h3>\n'
            f'<p class="definition">Definition: <code>{html.escape(str(definition))}</code></p>\n'
            f'<div class="row">\n{matrix}\n</div>\n'
            f"<h4>Statistical map (z &gt; {thr:.3f}: {n_above:,} grayordinates{cluster_note})</h4>\n"
            f"{body}\n</article>")


def cifti_mask_html(mask: np.ndarray, brain_models, has_mesh: bool) -> str:
    """The mask section of a CIFTI page: grayordinates in the mask per brain structure (and the no-mesh note)."""
    rows = "".join(
        f"<tr><td>{html.escape(_short(n))}</td><td>{'surface' if sub.surface_mask.all() else 'volume'}</td>"
        f"<td>{int(mask[sl].sum()):,}</td><td>{sl.stop - sl.start:,}</td></tr>"
        for n, sl, sub in _structures(brain_models)
    )
    text = ('<p>CIFTI grayordinates in the mask, per brain structure.</p><table class="clusters">'
            "<tr><th>structure</th><th>kind</th><th>in mask</th><th>grayordinates</th></tr>"
            f"{rows}</table>")
    return text if has_mesh else text + f'<p class="empty">{NO_MESH}</p>'


def cifti_map_html(values: np.ndarray, mask: np.ndarray, thr: float, two_sided: bool, brain_models, mesh,
                   name: str, stat: str = "z") -> tuple[str, int]:
    """A CIFTI map's figures and tables: histogram, cortex on ``mesh`` (if any), per-structure peaks.

    ``name`` is the map's (a contrast's) and ``stat`` what its values are.  Returns the HTML and the
    number of in-mask grayordinates above ``thr``.
    """
    shown = np.where(mask, values, 0.0)
    hist = _fig(_histogram(values[mask], thr, two_sided, name, stat), f"Histogram of the {stat} values of {name}",
                "matrix")
    if mesh is not None:
        surface = _fig(_cifti_surface_figure(shown, thr, mesh, brain_models, f"{name}, {stat} (threshold {thr:.2f})"),
                       f"Surface {stat} map of {name}", "brain")
    else:
        surface = f'<p class="empty">{NO_MESH}</p>'
    tables, n_above = _cifti_tables(shown, mask, thr, two_sided, brain_models, stat)
    return f'<div class="row">\n{hist}\n</div>\n{surface}\n{tables}', n_above


def cifti_report_page(model, contrasts: dict, title: str, threshold: float, alpha: float,
                      cluster_threshold: int, height_control, two_sided: bool, height_text: str,
                      mesh=None) -> str:
    """The report page (HTML) of a fitted CIFTI model.

    Parameters
    ----------
    model : daskglm.FirstLevelModel
        Fitted on CIFTI-2 dense time series (or reopened from such a store).
    contrasts, title, threshold, alpha, cluster_threshold, height_control, two_sided, height_text
        As :func:`surface_report_page`.
    mesh : PolyMesh, dict or (left, right), optional
        The surfaces of the fit's cortical structures (:func:`cifti_mesh`); the
        cortical maps are drawn on them.

    Returns
    -------
    str
    """
    geometry = model.space_.geometry
    mesh = None if mesh is None else cifti_mesh(mesh, geometry.brain_models)
    mask = np.asarray(model.space_.mask, dtype=bool)
    cluster_note = ("; cluster extents are not applied to grayordinates" if cluster_threshold else "")
    sections, nav = [], []
    for i, (name, definition) in enumerate(contrasts.items()):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*The same contrast will be used.*")
            z = np.asarray(model.compute_contrast(definition).dataobj, dtype=np.float64)[0]
        thr = _cifti_threshold(z, mask, alpha, threshold, height_control, two_sided)
        slug = f"contrast-{i + 1}"
        sections.append(_cifti_contrast_html(model, name, definition, slug, z, mask, thr, two_sided, mesh,
                                             cluster_note))
        nav.append(f'<li><a href="#{slug}">{html.escape(name)}</a></li>')
    mask_html = cifti_mask_html(mask, geometry.brain_models, mesh is not None)
    designs = [_fig(plotting.plot_design_matrix(d, title=f"Run {i + 1}"), f"Design matrix of run {i + 1}", "matrix")
               for i, d in enumerate(model.design_matrices_)]
    params = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
                     for k, v in model.get_params().items())
    if model.get_params().get("noise_model") == "ar1":
        whitening = _fig(plotting.plot_ar_coefficients(model.labels_), "Histogram of AR(1) coefficients", "matrix")
    else:
        whitening = "<p>No AR(1) whitening.</p>"
    page = _template("report.html").substitute(
        title=html.escape(title), css=_templates.CSS, nav="\n".join(nav),
        params=f'<table class="params">{params}</table>', n_runs=str(len(model.design_matrices_)),
        n_voxels=f"{model.n_elements_:,}", mask=mask_html, designs="\n".join(designs), whitening=whitening,
        height=height_text, contrasts="\n".join(sections), version=html.escape(__version__),
    )
    return page.replace(" voxels in the mask.</p>", " grayordinates in the mask.</p>", 1)
