"""nilearn's beta-series recipes (examples/07_advanced/plot_beta_series.py): one FirstLevelModel per trial.

The independent reference of the tests: each run is fitted on its own, as
the example does, and every trial's map comes from nilearn's
``compute_contrast`` of its own column.
"""

from __future__ import annotations

import warnings

import numpy as np
from nilearn.glm.first_level import FirstLevelModel
from nilearn.maskers import NiftiMasker


def lss_transformer(events_df, row_number, collapse=False):
    """nilearn's example's ``lss_transformer``; ``collapse`` puts the other trials in one column (LSS-1)."""
    events_df = events_df.copy()
    trial_condition = events_df.loc[row_number, "trial_type"]
    series = events_df["trial_type"]
    trial_number = series.loc[series == trial_condition].index.tolist().index(row_number)
    trial_name = f"{trial_condition}__{trial_number:03d}"
    if collapse:
        events_df["trial_type"] = "other_trials"
    events_df.loc[row_number, "trial_type"] = trial_name
    return events_df, trial_name


def lsa_events(events_df):
    """nilearn's example's LSA events: ``<condition>__<count>`` per trial."""
    events_df = events_df.copy()
    counter = dict.fromkeys(events_df["trial_type"].unique(), 0)
    names = []
    for i, condition in enumerate(events_df["trial_type"]):
        counter[condition] += 1
        names.append(f"{condition}__{counter[condition]:03d}")
        events_df.loc[i, "trial_type"] = names[-1]
    return events_df, names


def nilearn_beta_series(imgs, events, mask, method, output_type="effect_size", confounds=None,
                        sample_masks=None, **params):
    """(n_trials, V) of every trial of every run, in events order, run after run."""
    masker = NiftiMasker(mask).fit()
    confounds = confounds or [None] * len(imgs)
    sample_masks = sample_masks or [None] * len(imgs)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for img, ev, conf, smask in zip(imgs, events, confounds, sample_masks):
            ev = ev.reset_index(drop=True)
            smask = None if smask is None else [smask]  # nilearn: one mask per run of the fit
            if method == "lsa":
                lsa, names = lsa_events(ev)
                glm = FirstLevelModel(mask_img=mask, **params).fit(img, lsa, confounds=conf, sample_masks=smask)
                for name in names:
                    rows.append(np.ravel(masker.transform(glm.compute_contrast(name, output_type=output_type))))
                continue
            for i in range(len(ev)):
                lss, name = lss_transformer(ev, i, collapse=method == "lss1")
                glm = FirstLevelModel(mask_img=mask, **params).fit(img, lss, confounds=conf, sample_masks=smask)
                rows.append(np.ravel(masker.transform(glm.compute_contrast(name, output_type=output_type))))
    return np.array(rows)


def agreement(ours, ref, rtol=1e-3):
    """Fraction of (trial, voxel) values equal within ``rtol`` (relative to each trial's scale)."""
    scale = np.abs(ref).max(axis=1, keepdims=True)
    close = np.abs(ours - ref) <= rtol * np.maximum(np.abs(ref), 1e-3 * scale)
    return close.mean(), int((~close).sum())
