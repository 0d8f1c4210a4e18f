"""Everything daskglm takes from other packages' private corners, behind one door each."""
