"""The element space of a fit: the voxels of a mask, or the vertices / grayordinates of a surface.

- :mod:`~daskglm.space.base`: :class:`ElementSpace`, what the rest of the package asks of a fit's
  elements (stream masker, unmask, coordinates, nilearn masker, store record);
- :mod:`~daskglm.space.build`: :func:`resolve_space`, nilearn's masker decisions made once in ``fit``,
  and :func:`element_space`, a stored fit's space rebuilt from its record;
- :mod:`~daskglm.space.volume`: :class:`VolumeSpace`, the volume mask (given, all voxels, nilearn's EPI
  mask) and grid checks;
- :mod:`~daskglm.space.surface`: :class:`SurfaceSpace`, surface and CIFTI masks, maps and checks.
"""
