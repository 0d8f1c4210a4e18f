"""What a GLM is made of, before any data: designs, contrasts, confounds, censoring.

- :mod:`~daskglm.glm.tables`: events and confounds files (local or URL, TSV/CSV) read whole;
- :mod:`~daskglm.glm.confounds`: the one confounds reader (TSV/CSV, SPM ``rp_*.txt``, FSL ``.par``,
  AFNI ``.1D``) and confounds as design columns;
- :mod:`~daskglm.glm.design`: design matrices (given, or nilearn's builder from events);
- :mod:`~daskglm.glm.contrasts`: contrast definitions (expressions, padding, per-run lists);
- :mod:`~daskglm.glm.sample_masks`: censoring (``sample_masks``) checks and files.
"""
