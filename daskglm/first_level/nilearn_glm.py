"""nilearn's (private) GLM interface, so that nilearn's own report and BIDS writer take a daskglm model.

``nilearn.reporting.make_glm_report(model, ...)`` calls
``model.generate_report(...)`` with nilearn's arguments (``bg_img=
"MNI152TEMPLATE"``, ``threshold=3.09``, ``min_distance``, ``plot_type``,
``report_dims``...).  ``nilearn.glm.save_glm_to_bids(model, ...)`` (and its
old home ``nilearn.interfaces.bids``) reads ``generate_report``'s parameters
and their defaults, then these members of nilearn's ``BaseGLM``, private in
nilearn, which :class:`NilearnGLMInterface` gives :class:`daskglm.FirstLevelModel`
with nilearn's meaning:

=================================  ============================================================
``str(model)``                     ``"First Level Model"`` (nilearn's switch between levels)
``_is_first_level_glm()``          True
``_is_volume_glm()``               the fit's space is a volume (``space_.kind``)
``_mask_img``                      ``mask_img_`` once fitted, else the ``mask_img`` parameter
``_attributes_to_dict()``          the parameters nilearn lists (``statmap.json``, the report)
``_reporting_data``                ``trial_types``, ``noise_model``, ``hrf_model``,
                                   ``drift_model`` (nilearn's sentence), ``run_imgs`` (each
                                   run's BIDS name fields, ``{}`` for a run given in memory or
                                   reopened from a store), and ``filenames`` once
                                   ``save_glm_to_bids`` named its outputs
``_generate_filenames_output()``   nilearn's naming of the BIDS outputs (run on this model)
``_make_stat_maps()``              ``{name: compute_contrast(contrast, output_type)}``
``residuals_``, ``r_square_``      nilearn's (``minimize_memory=False``, as nilearn requires)
=================================  ============================================================

These names are nilearn's internals, kept for nilearn's functions: they are
not daskglm API.  nilearn's private helpers are reached through
:mod:`daskglm.compat.nilearn`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from daskglm.compat.nilearn import (
    contrasts_as_dict,
    glm_attributes_to_dict,
    glm_filenames_output,
    load_tables,
)

__all__ = ["NilearnGLMInterface", "nilearn_reporting_data"]


def nilearn_reporting_data(model, run_imgs=None, events=None, design_matrices=None) -> dict:
    """nilearn's ``FirstLevelModel._reporting_data`` at the end of ``fit``.

    Parameters
    ----------
    model : FirstLevelModel
        Its ``noise_model``, ``hrf_model``, ``drift_model``, ``high_pass``, ``drift_order``.
    run_imgs : list or one run, optional
        As given to ``fit``: the BIDS name fields of runs given as paths
        (nilearn's ``parse_bids_filename``), ``{}`` for the others.  None (a
        reopened store): ``{}`` for each of the model's runs.
    events : list or one table, optional
        The events tables; their ``trial_type`` values are listed (nilearn
        reads none when designs are given).
    design_matrices : optional
        Given designs (then events are not read, as nilearn).
    """
    from nilearn.interfaces.bids import parse_bids_filename

    drift = None
    if model.drift_model:
        param = (f"high pass filter={model.high_pass} Hz" if model.drift_model == "cosine"
                 else f"order={model.drift_order}")
        drift = f"and a {model.drift_model} drift model ({param})"
    trial_types: set = set()
    if design_matrices is None and events is not None:
        tables = [ev for ev in _as_list(events)
                  if isinstance(ev, pd.DataFrame) or (isinstance(ev, (str, Path)) and Path(ev).is_file())]
        for table in load_tables(tables, "events") if tables else []:
            if "trial_type" in table.columns:
                trial_types.update(x for x in table["trial_type"] if x)
    runs = [None] * len(model.design_matrices_) if run_imgs is None else _as_list(run_imgs)
    return {
        "trial_types": sorted(trial_types),
        "noise_model": model.noise_model,
        "hrf_model": "finite impulse response" if model.hrf_model == "fir" else model.hrf_model,
        "drift_model": drift,
        "run_imgs": {i: parse_bids_filename(run) if isinstance(run, (str, Path)) else {}
                     for i, run in enumerate(runs)},
    }


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class NilearnGLMInterface:
    """Mixin: the members of nilearn's ``BaseGLM`` that nilearn's report and BIDS writer read (see module)."""

    _nilearn_reporting: dict | None = None
    _nilearn_fit_inputs: tuple | None = None
    #: The contrasts ``save_glm_to_bids`` wrote, for ``generate_report()`` without contrasts (as nilearn's).
    _saved_contrasts: dict | None = None
    _saved_z_maps: dict | None = None

    def __str__(self) -> str:
        """nilearn's name of the model's level, ``"First Level Model"`` (``repr`` gives the parameters)."""
        return "First Level Model"

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags, as nilearn's GLMs have them (``check_is_fitted`` reads them)."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type="glm", target_tags=TargetTags(required=False))

    def _is_first_level_glm(self) -> bool:
        return True

    def _is_volume_glm(self) -> bool:
        if self.__sklearn_is_fitted__():
            return self.space_.kind == "volume"
        from nilearn.maskers import SurfaceMasker
        from nilearn.surface import SurfaceImage

        return not isinstance(self.mask_img, (SurfaceMasker, SurfaceImage))

    @property
    def _mask_img(self):
        return self.mask_img_ if self.__sklearn_is_fitted__() else self.mask_img

    def _attributes_to_dict(self) -> dict:
        return glm_attributes_to_dict(self)

    @property
    def _reporting_data(self) -> dict:
        if self._nilearn_reporting is None:  # built on first use: fit imports none of nilearn's BIDS helpers
            run_imgs, events, designs = self._nilearn_fit_inputs or (None, None, None)
            self._nilearn_reporting = nilearn_reporting_data(self, run_imgs, events, designs)
        return self._nilearn_reporting

    def _keep_fit_inputs(self, run_imgs, events, design_matrices) -> None:
        """What nilearn's ``_reporting_data`` records of ``fit``'s arguments: run paths, events, designs given."""
        paths = [run if isinstance(run, (str, Path)) else None for run in _as_list(run_imgs)]
        self._nilearn_fit_inputs = (paths, events, design_matrices is not None or None)
        self._nilearn_reporting = None

    def _generate_filenames_output(self, prefix, contrasts, contrast_types, out_dir, entities_to_drop=None):
        if self.__sklearn_is_fitted__() and self.space_.kind == "cifti":
            raise ValueError("nilearn's save_glm_to_bids writes volumes and surfaces, not CIFTI: write a CIFTI "
                             "fit's derivatives with daskglm.studies.bids.derivatives.save_bids_derivatives "
                             "(daskglm fit --bids-out).")
        self._saved_contrasts = contrasts_as_dict(contrasts)
        glm_filenames_output(self, prefix, contrasts, contrast_types, out_dir, entities_to_drop)

    def _make_stat_maps(self, contrasts, output_type="z_score", first_level_contrast=None) -> dict:
        del first_level_contrast  # nilearn's signature: used by the second level only
        maps = {name: self.compute_contrast(con, output_type=output_type)
                for name, con in contrasts_as_dict(contrasts).items()}
        self._saved_z_maps = {name: m["z_score"] if output_type == "all" else m for name, m in maps.items()} \
            if output_type in ("all", "z_score") else None
        return maps

    def _report_contrasts(self, contrasts) -> tuple:
        """``(contrasts, z maps)``: those given (no map), or (None given) those ``save_glm_to_bids`` wrote with
        the z maps it computed: nilearn's report reuses them (nothing recomputed, no warning repeated)."""
        if contrasts is None and self._saved_contrasts is not None and "filenames" in self._reporting_data:
            return self._saved_contrasts, self._saved_z_maps
        return contrasts, None
