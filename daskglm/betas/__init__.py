"""Single-trial betas (beta series): LSA and LSS for every trial from one streaming pass per run."""

from daskglm.betas.model import BetaSeriesModel

__all__ = ["BetaSeriesModel"]
