"""Many subjects: spec-driven studies, their scheduling, and BIDS / fMRIPrep studies.

- :mod:`~daskglm.studies.subjects`: ``fit_subjects`` / ``open_subject`` (one store, one group per subject);
- :mod:`~daskglm.studies.schedule`: one task per subject under a distributed client;
- :mod:`~daskglm.studies.bids`: ``first_level_from_bids``, ``fit_bids``, BIDS derivatives.
"""
