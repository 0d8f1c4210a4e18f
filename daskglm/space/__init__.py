"""The element space of a fit: the voxels of a mask, or the vertices / grayordinates of a surface.

- :mod:`~daskglm.space.base`: :class:`ElementSpace`, what the rest of the package asks of a fit's
  elements (stream masker, streamed runs, unmask, volumes, coordinates, nilearn masker), and
  :func:`masker_mask`, a nilearn masker given where a mask goes;
- :mod:`~daskglm.space.build`: nilearn's masker decisions for ``fit``, in two steps
  (:func:`plan_space`: checks, no data read; :meth:`SpacePlan.build`: the mask and the streamed
  runs), and :func:`element_space`, a stored fit's space rebuilt from its record;
- :mod:`~daskglm.space.volume`: :class:`VolumeSpace`, the volume mask (given, all voxels, nilearn's EPI
  mask) and grid checks;
- :mod:`~daskglm.space.surface`: :class:`SurfaceSpace`, surface and CIFTI masks, maps and checks.
"""
