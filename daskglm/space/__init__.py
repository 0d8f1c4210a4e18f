"""The element space of a fit: the voxels of a mask, or the vertices / grayordinates of a surface.

- :mod:`~daskglm.space.volume`: the volume mask (given, all voxels, nilearn's EPI mask) and grid checks;
- :mod:`~daskglm.space.surface`: surface and CIFTI masks, maps and checks.
"""
