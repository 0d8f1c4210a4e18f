"""Everything daskglm takes from other packages' private corners, behind one door each.

- :mod:`~daskglm.compat.nilearn`: the supported nilearn range (checked on first use) and a named
  wrapper for every private nilearn helper daskglm calls.
"""
