"""Plots of a fit, drawn by :mod:`nilearn.plotting` on exported images.

Every function draws on its own :class:`matplotlib.figure.Figure` attached to
an Agg canvas, so nothing touches pyplot's global state or needs a display:
the functions work the same in scripts, on headless servers, in the CLI and
in notebooks.  Each returns the figure; :func:`save_figure` writes it to a file
and :func:`figure_to_data_uri` embeds it in HTML.
"""

from __future__ import annotations

import base64
import io
import os
import warnings

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "new_figure",
    "save_figure",
    "figure_to_data_uri",
    "plot_stat_map",
    "plot_glass_brain",
    "plot_design_matrix",
    "plot_contrast_matrix",
    "plot_mask",
    "plot_ar_coefficients",
    "mask_cut_coords",
    "surviving_voxels",
    "empty_map_figure",
    "ONE_SIDED_CMAP",
]


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas, independent of pyplot."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write ``fig`` to ``path`` (format from the extension) and return the path."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor=fig.get_facecolor())
    return os.fspath(path)


def figure_to_data_uri(fig: Figure, fmt: str = "png", dpi: int = 90) -> str:
    """``data:`` URI of ``fig`` as base64 PNG or SVG, for self-contained HTML."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", facecolor=fig.get_facecolor())
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def surviving_voxels(stat_img, threshold: float) -> int:
    """Voxels of ``stat_img`` that a plot thresholded at ``threshold`` would draw."""
    from nilearn.image import load_img

    data = np.asarray(load_img(stat_img).dataobj, dtype=float)
    if not np.isfinite(threshold):
        return 0
    return int(np.count_nonzero(np.isfinite(data) & (np.abs(data) >= threshold) & (data != 0)))


def empty_map_figure(title: str | None, threshold: float, two_sided: bool = True) -> Figure:
    """A figure that says, in words, that no voxel survives the threshold."""
    fig = new_figure(10.0, 1.2)
    fig.set_facecolor("white")
    if not np.isfinite(threshold):
        rule = "the threshold (none can: the threshold is infinite)"
    else:
        rule = f"the threshold ({'|z|' if two_sided else 'z'} \u2265 {threshold:.2f})"
    text = f"No voxel survives {rule}."
    if title:
        fig.text(0.01, 0.72, title, fontsize=12, weight="bold", va="center")
    fig.text(0.01, 0.3, text, fontsize=12, va="center", color="#333333")
    return fig


def plot_stat_map(stat_img, bg_img=None, threshold: float = 3.0, title: str | None = None,
                  cut_coords=None, display_mode: str = "ortho", two_sided: bool = True,
                  **kwargs) -> Figure:
    """Statistical map over a background (e.g. the mean image), thresholded.

    Parameters
    ----------
    stat_img : path or Nifti1Image
    bg_img : path, Nifti1Image or None
        Background (e.g. the mean image, to show the map in the context of
        the whole brain); ``None`` draws on black.
    threshold : float, default=3.0
        Values with ``|z| < threshold`` are transparent.  When no voxel is
        left, the figure says so in words instead of drawing empty cuts.
    title : str, optional
    cut_coords : sequence of float, optional
        Cut positions in mm (default: nilearn's choice, near the peak).
    display_mode : str, default='ortho'
        nilearn's display mode ('ortho', 'x', 'y', 'z', 'mosaic', ...).
    two_sided : bool, default=True
        ``True``: red for positive, blue for negative, on a symmetric colour
        bar.  ``False`` (a one-sided map, negative values ignored): a red-to-
        yellow colour map on a colour bar from 0 up.
    **kwargs
        Passed to :func:`nilearn.plotting.plot_stat_map`.
    """
    from nilearn import plotting

    stat_img = _one_sided(stat_img) if not two_sided else stat_img
    if surviving_voxels(stat_img, threshold) == 0:
        return empty_map_figure(title, threshold, two_sided)
    width = 12.0 if display_mode in ("mosaic",) else 10.0
    fig = new_figure(width, 3.6)
    kwargs.setdefault("black_bg", True)
    if two_sided:
        # red for positive, blue for negative, always: with nilearn's 'auto' a positive-only
        # map spreads the whole red-blue map over [0, max], painting weak positives blue
        kwargs.setdefault("symmetric_cbar", True)
    else:
        kwargs.setdefault("cmap", ONE_SIDED_CMAP)
        kwargs.setdefault("symmetric_cbar", False)
        kwargs.setdefault("vmin", 0.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*empty.*")
        plotting.plot_stat_map(
            stat_img, bg_img=bg_img, threshold=threshold,
            title=title, cut_coords=cut_coords, display_mode=display_mode, figure=fig, **kwargs,
        )
    return fig


#: Colour map of one-sided maps (positive values only): red at the threshold, yellow at the peak.
ONE_SIDED_CMAP = "autumn"


def _one_sided(stat_img):
    """``stat_img`` with its negative values set to 0 (a one-sided map shows positives only)."""
    import nibabel as nib
    from nilearn.image import load_img

    img = load_img(stat_img)
    data = np.asarray(img.dataobj, dtype=np.float32)
    return nib.Nifti1Image(np.where(data > 0, data, 0).astype(np.float32), img.affine)


def plot_glass_brain(stat_img, threshold: float = 3.0, title: str | None = None,
                     plot_abs: bool = False, recentre: bool = False, two_sided: bool = True,
                     **kwargs) -> Figure:
    """Glass-brain projection of a statistical map (nilearn's ``plot_glass_brain``).

    The outline is MNI's brain; the maps are drawn in their own world
    coordinates, so the picture is meaningful for data in (or near) MNI space.
    ``recentre=True`` shifts the image so its field of view is centred on
    0 mm first (orientation kept): a display aid for data in scanner
    coordinates, such as FIAC's.  ``two_sided=False`` draws a one-sided map
    (positive values) with a one-sided colour map, as :func:`plot_stat_map`;
    an empty map gives a figure that says so.
    """
    from nilearn import plotting

    if recentre:
        stat_img = _recentred(stat_img)
    if not two_sided:
        stat_img = _one_sided(stat_img)
        kwargs.setdefault("cmap", ONE_SIDED_CMAP)
        kwargs.setdefault("symmetric_cbar", False)
        kwargs.setdefault("vmin", 0.0)
    if surviving_voxels(stat_img, threshold) == 0:
        return empty_map_figure(title, threshold, two_sided)
    fig = new_figure(10.0, 3.6)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*empty.*")
        plotting.plot_glass_brain(
            stat_img, threshold=threshold, title=title, plot_abs=plot_abs, colorbar=True,
            figure=fig, **kwargs,
        )
    return fig


def _recentred(img):
    import nibabel as nib
    import numpy as np
    from nilearn.image import load_img

    img = load_img(img)
    affine = img.affine.copy()
    centre = affine[:3, :3] @ ((np.asarray(img.shape[:3]) - 1) / 2) + affine[:3, 3]
    affine[:3, 3] -= centre
    return nib.Nifti1Image(np.asarray(img.dataobj), affine, img.header)


def plot_design_matrix(design: pd.DataFrame, title: str | None = None) -> Figure:
    """Design matrix as nilearn draws it (columns rescaled to unit maximum)."""
    from nilearn import plotting

    n_cols = design.shape[1]
    fig = new_figure(max(3.0, 0.35 * n_cols + 1.5), 5.0)
    ax = fig.add_subplot()
    plotting.plot_design_matrix(_named(design), axes=ax)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def plot_contrast_matrix(contrast_def, design: pd.DataFrame, title: str | None = None) -> Figure:
    """Contrast weights over the design's columns (nilearn's ``plot_contrast_matrix``).

    ``contrast_def`` may be an expression over column names, a vector or an
    F matrix; short ones are zero-padded, as in ``compute_contrast``.
    """
    from nilearn import plotting

    from daskglm.glm.contrasts import as_contrast_matrix

    design = _named(design)
    con = as_contrast_matrix(contrast_def, list(design.columns))
    con = np.atleast_2d(con)
    if con.shape[1] < design.shape[1]:
        con = np.pad(con, [(0, 0), (0, design.shape[1] - con.shape[1])])
    fig = new_figure(max(3.0, 0.35 * design.shape[1] + 1.5), 0.4 * con.shape[0] + 2.4)
    ax = fig.add_subplot()
    plotting.plot_contrast_matrix(con, design, colorbar=False, axes=ax)
    # the colour bar goes below the matrix: on the right (nilearn's place) it covers the
    # last column's label, which is rotated to the right
    fig.colorbar(ax.images[0], ax=ax, orientation="horizontal", fraction=0.08, pad=0.08,
                 aspect=40, shrink=0.6)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def mask_cut_coords(mask_img) -> list[float]:
    """Cuts (x, y, z in mm) through the mask: the in-mask voxel nearest its centre of mass.

    A mask in scanner space may not contain 0 mm (nilearn's default cut), and
    the centre of mass of a hollow or curved mask may fall outside it; the
    nearest in-mask voxel is inside by construction, so every cut shows mask.
    """
    from nilearn.image import load_img

    img = load_img(mask_img)
    ijk = np.argwhere(np.asarray(img.dataobj) != 0)
    if ijk.size == 0:
        raise ValueError("The mask is empty: no voxel to cut through.")
    centre = ijk.mean(axis=0)
    nearest = ijk[np.argmin(((ijk - centre) ** 2).sum(axis=1))]
    return [float(v) for v in img.affine[:3, :3] @ nearest + img.affine[:3, 3]]


def plot_mask(mask_img, bg_img=None, title: str | None = "Analysis mask") -> Figure:
    """The analysis mask over a background (nilearn's ``plot_roi``): filled, with its outline.

    The cuts go through the mask (:func:`mask_cut_coords`), so each of the
    three views shows it, whatever the data's world coordinates.
    """
    from nilearn import plotting

    fig = new_figure(10.0, 3.6)
    display = plotting.plot_roi(mask_img, bg_img=bg_img, title=title, cut_coords=mask_cut_coords(mask_img),
                                figure=fig, black_bg=True, colorbar=False, alpha=0.45,
                                cmap="autumn", draw_cross=False)
    display.add_contours(mask_img, levels=[0.5], colors="yellow", linewidths=1.5)
    return fig


def plot_ar_coefficients(ar_coefs: list[np.ndarray], title: str | None = "AR(1) coefficients") -> Figure:
    """Whitening diagnostics: histogram of each run's per-voxel AR(1) coefficient.

    The coefficients are nilearn's labels, multiples of 0.01 (:data:`AR_BIN`):
    each bar is one value of that grid (bin edges halfway between grid
    values), so no bin holds two grid values and none falls between them.

    Parameters
    ----------
    ar_coefs : list of array
        One array of in-mask coefficients per run, e.g. ``model.labels_``.
    """
    fig = new_figure(6.0, 3.0)
    ax = fig.add_subplot()
    runs = [np.asarray(rho, dtype=float).ravel() for rho in ar_coefs]
    finite = np.concatenate([rho[np.isfinite(rho)] for rho in runs]) if runs else np.zeros(0)
    lo, hi = (np.floor(finite.min() / AR_BIN), np.ceil(finite.max() / AR_BIN)) if finite.size else (0, 0)
    edges = (np.arange(lo, hi + 2) - 0.5) * AR_BIN
    for i, rho in enumerate(runs):
        ax.hist(rho[np.isfinite(rho)], bins=edges, alpha=0.6,
                label=f"run {i + 1}: median {np.median(rho):.2f}")
    ax.set_xlabel("AR(1) coefficient (bins of 0.01)")
    ax.set_ylabel("voxels")
    ax.set_xlim(min(-0.1, edges[0] - AR_BIN), max(0.5, edges[-1] + AR_BIN))
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


#: The grid of nilearn's AR(1) labels (``bins=100`` over [-1, 1]).
AR_BIN = 0.01


def _named(design: pd.DataFrame) -> pd.DataFrame:
    """nilearn's plots need string column names."""
    design = pd.DataFrame(design)
    return design.set_axis([str(c) for c in design.columns], axis=1)
