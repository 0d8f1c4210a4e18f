"""The first-level estimator: ``FirstLevelModel`` and what it owns.

- :mod:`~daskglm.first_level.model`: ``FirstLevelModel`` and ``open_model``;
- :mod:`~daskglm.first_level.inputs`: what ``fit`` streams (runs, designs, censoring, the element space);
- :mod:`~daskglm.first_level.outputs`: per-scan outputs (``residuals_``, ``predicted_``, ``r_square_``);
- :mod:`~daskglm.first_level.representation`: nilearn's ``repr``;
- :mod:`~daskglm.first_level.volumes`: per-voxel arrays as labelled volumes;
- :mod:`~daskglm.first_level.fixed_effects`: ``compute_fixed_effects`` on images.
"""
