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


def plot_stat_map(stat_img, bg_img=None, threshold: float = 3.0, title: str | None = None,
                  cut_coords=None, display_mode: str = "ortho", **kwargs) -> Figure:
    """Statistical map over a background (e.g. the mean image), thresholded.

    Parameters
    ----------
    stat_img : path or Nifti1Image
    bg_img : path, Nifti1Image or None
        Background; ``None`` draws on black (no background).
    threshold : float, default=3.0
        Values with ``|z| < threshold`` are transparent.
    title : str, optional
    cut_coords : sequence of float, optional
        Cut positions in mm (default: nilearn's choice, near the peak).
    display_mode : str, default='ortho'
        nilearn's display mode ('ortho', 'x', 'y', 'z', 'mosaic', ...).
    **kwargs
        Passed to :func:`nilearn.plotting.plot_stat_map`.
    """
    from nilearn import plotting

    width = 12.0 if display_mode in ("mosaic",) else 10.0
    fig = new_figure(width, 3.6)
    kwargs.setdefault("black_bg", True)
    # red for positive, blue for negative, always: with nilearn's 'auto' a positive-only
    # (one-sided) map spreads the whole red-blue map over [0, max], painting weak positives blue
    kwargs.setdefault("symmetric_cbar", True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*empty.*")
        plotting.plot_stat_map(
            stat_img, bg_img=bg_img, threshold=threshold,
            title=title, cut_coords=cut_coords, display_mode=display_mode, figure=fig, **kwargs,
        )
    return fig


def plot_glass_brain(stat_img, threshold: float = 3.0, title: str | None = None,
                     plot_abs: bool = False, recentre: bool = False, **kwargs) -> Figure:
    """Glass-brain projection of a statistical map (nilearn's ``plot_glass_brain``).

    The outline is MNI's brain; the maps are drawn in their own world
    coordinates, so the picture is meaningful for data in (or near) MNI space.
    ``recentre=True`` shifts the image so its field of view is centred on
    0 mm first (orientation kept): a display aid for data in scanner
    coordinates, such as FIAC's.
    """
    from nilearn import plotting

    if recentre:
        stat_img = _recentred(stat_img)

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

    from ..contrasts import as_contrast_matrix

    design = _named(design)
    con = as_contrast_matrix(contrast_def, list(design.columns))
    con = np.atleast_2d(con)
    if con.shape[1] < design.shape[1]:
        con = np.pad(con, [(0, 0), (0, design.shape[1] - con.shape[1])])
    fig = new_figure(max(3.0, 0.35 * design.shape[1] + 1.5), 0.4 * con.shape[0] + 1.6)
    ax = fig.add_subplot()
    plotting.plot_contrast_matrix(con, design, colorbar=True, axes=ax)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def plot_mask(mask_img, bg_img=None, title: str | None = "Analysis mask") -> Figure:
    """Outline of the analysis mask over a background (nilearn's ``plot_roi``, contours)."""
    from nilearn import plotting

    fig = new_figure(10.0, 3.6)
    plotting.plot_roi(mask_img, bg_img=bg_img, title=title,
                      figure=fig, view_type="contours", black_bg=True, colorbar=False,
                      linewidths=2.0, cmap="autumn")
    return fig


def plot_ar_coefficients(ar_coefs: list[np.ndarray], title: str | None = "AR(1) coefficients") -> Figure:
    """Whitening diagnostics: histogram of each run's per-voxel AR(1) coefficient.

    Parameters
    ----------
    ar_coefs : list of array
        One array of in-mask coefficients per run, e.g. ``model.labels_``.
    """
    fig = new_figure(6.0, 3.0)
    ax = fig.add_subplot()
    for i, rho in enumerate(ar_coefs):
        rho = np.asarray(rho, dtype=float).ravel()
        ax.hist(rho, bins=np.linspace(-1, 1, 101), alpha=0.6,
                label=f"run {i + 1}: median {np.median(rho):.2f}")
    ax.set_xlabel("AR(1) coefficient (binned at 0.01)")
    ax.set_ylabel("voxels")
    ax.set_xlim(-0.5, 1.0)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def _named(design: pd.DataFrame) -> pd.DataFrame:
    """nilearn's plots need string column names."""
    design = pd.DataFrame(design)
    return design.set_axis([str(c) for c in design.columns], axis=1)
