"""Dask graphs of second-level contrasts: subjects' rows → voxel blocks → packed maps.

The statistics are in :mod:`daskglm.kernels.second_level` (OLS and mixed
effects) and :mod:`daskglm.kernels.contrast` (stat, p, z); this module stacks
the subjects' lazy rows into a ``(subjects, voxels)`` array chunked by voxel
blocks and maps the kernels over the blocks.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from daskglm.kernels.contrast import ContrastLayout
from daskglm.kernels.second_level import (
    MIXED_EXTRA_ROWS,
    OLSDesign,
    mixed_contrast_outputs,
    ols_contrast_outputs,
)

__all__ = ["stack_rows", "voxel_block_size", "ols_contrast", "mixed_contrast"]

#: Elements (subjects × voxels) of one block of group data (32 MiB of float64).
BLOCK_ELEMENTS = 2 ** 22


def voxel_block_size(n_subjects: int) -> int:
    """Voxels per block, so that a block holds about :data:`BLOCK_ELEMENTS` values."""
    return max(1024, BLOCK_ELEMENTS // max(n_subjects, 1))


def stack_rows(rows: list[da.Array]) -> da.Array:
    """Subjects' (V,) rows as one ``(n, V)`` float64 array chunked by voxel blocks."""
    Y = da.stack([r.astype(np.float64) for r in rows])
    return Y.rechunk((len(rows), voxel_block_size(len(rows))), method="tasks")  # no p2p shuffle (its log lines)


def ols_contrast(Y: da.Array, design: OLSDesign, con: np.ndarray, stat_type: str, dim: int) -> da.Array:
    """Lazy packed maps ``[effect (q), variance, stat, p, z]`` of an OLS group contrast."""
    layout = ContrastLayout.for_contrast(stat_type, dim)
    return da.map_blocks(ols_contrast_outputs, Y, design, con, stat_type, dim, dtype=np.float64,
                         chunks=((layout.n_rows,), Y.chunks[1]))


def mixed_contrast(Y: da.Array, Vw: da.Array, design: OLSDesign, con: np.ndarray, stat_type: str,
                   dim: int) -> da.Array:
    """Lazy packed maps ``[effect (q), variance, stat, p, z, σ²_between]`` (mixed effects)."""
    layout = ContrastLayout.for_contrast(stat_type, dim, MIXED_EXTRA_ROWS)
    Vw = Vw.rechunk(Y.chunks, method="tasks")
    return da.map_blocks(mixed_contrast_outputs, Y, Vw, design.X, con, stat_type, dim, design.df,
                         dtype=np.float64, chunks=((layout.n_rows,), Y.chunks[1]))
