"""graph/stream: the tree sum of streamed pieces adds into the first piece (no third copy)."""

from __future__ import annotations

import numpy as np

from daskglm.graph.stream import _add_into
from daskglm.kernels.sufficient_stats import chunk_stats, combine_stats, stacked_design


def _pieces():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(40, 7))
    stack = stacked_design(X, 1)
    first = chunk_stats(Y[:20], 0, 40, stack, 1, Y[:0])
    second = chunk_stats(Y[20:], 20, 40, stack, 1, Y[19:20])
    return first, second, chunk_stats(Y, 0, 40, stack, 1, Y[:0])


def test_add_into_equals_the_whole_run_and_reuses_the_first_piece():
    first, second, whole = _pieces()
    buffers = {name: arr for name, arr in first.arrays().items()}
    total = _add_into(first, second)
    assert total is first
    for name, arr in total.arrays().items():
        assert arr is buffers[name]
        np.testing.assert_allclose(arr, whole.arrays()[name], rtol=1e-12, atol=1e-12)


def test_add_into_read_only_pieces_falls_back_to_a_new_sum():
    first, second, whole = _pieces()
    for arr in first.arrays().values():
        arr.flags.writeable = False
    total = _add_into(first, second)
    assert total is not first
    for name, arr in combine_stats(*_pieces()[:2]).arrays().items():
        np.testing.assert_allclose(total.arrays()[name], arr, rtol=1e-12)
