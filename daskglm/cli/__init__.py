"""``daskglm`` command line: ``demo``, ``fit``, ``contrast``, ``report``, ``fit-subjects``, ``migrate``,
``group`` and ``bids``.

Thin by design: each subcommand parses its options, calls the public API and
shows progress (dask's :class:`~dask.diagnostics.ProgressBar` with a local
scheduler, :func:`distributed.progress` under a ``distributed`` client).
Mistakes in the user's input (a missing file, a bad contrast, an invalid
option; the library raises ``ValueError``, ``TypeError`` or
``FileNotFoundError`` for them) end with a one-line ``daskglm: error: ...`` on
stderr and exit code 2; ``--traceback`` shows the full traceback instead.  So
does a nilearn outside the supported range
(:class:`~daskglm.errors.NilearnVersionError`): the parser, which imports
every command and so nilearn's version check, is imported when :func:`main`
runs, not when this package is.
``fit-subjects`` exits with 1 when its spec cannot be used or a subject
failed, with one ``daskglm fit-subjects: error: ...`` line per failure.

- :mod:`~daskglm.cli.parser`: the argument parser (:func:`build_parser`);
- :mod:`~daskglm.cli.commands`: the handlers of ``demo``, ``fit``, ``contrast``, ``report``,
  ``fit-subjects`` and ``migrate``;
- :mod:`~daskglm.cli.runtime`: scheduler, progress, warnings and the error policy;
- :mod:`~daskglm.cli.values`: what the given values mean: contrasts as text or JSON
  (:func:`parse_contrast`), ``KEY=VALUE`` options, ``fit``'s options as model parameters;
- :mod:`~daskglm.cli.surfaces`: GIfTI and CIFTI runs, meshes, surface masks and maps of
  ``fit``, ``contrast`` and ``report``;
- :mod:`~daskglm.cli.demo`: ``daskglm demo``, the seed workflow on simulated FIAC-like data;
- :mod:`~daskglm.cli.group`: ``daskglm group``, a group analysis straight from a study store;
- :mod:`~daskglm.cli.bids`: ``daskglm bids`` (a BIDS study into one store, exit status 1 if a
  subject failed);
- ``python -m daskglm.cli`` (:mod:`~daskglm.cli.__main__`) runs :func:`main`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from daskglm.cli.runtime import PROG, USAGE_STATUS, compute_with_progress, one_line
from daskglm.cli.values import parse_contrast
from daskglm.errors import NilearnVersionError, UsageError

__all__ = ["main", "build_parser", "common_options", "compute_with_progress", "parse_contrast",
           "UsageError"]

#: Names of :mod:`daskglm.cli.parser` served from here on first use (PEP 562): the parser imports
#: every command, and with them nilearn's version check, which :func:`main` reports in one line.
_PARSER_NAMES = ("build_parser", "common_options", "resolve_progress")


def __getattr__(name: str):
    if name in _PARSER_NAMES:
        from daskglm.cli import parser

        return getattr(parser, name)
    raise AttributeError(f"module 'daskglm.cli' has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``daskglm`` command line; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for usage errors (with a one-line message on stderr),
        1 when ``fit-subjects`` had failures, 130 if interrupted.
    """
    import matplotlib

    matplotlib.use("Agg")
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        from daskglm.cli.parser import build_parser, resolve_progress
    except NilearnVersionError as err:
        if "--traceback" in argv:
            raise
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return USAGE_STATUS
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, argparse's own usage errors
        return int(exit_.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return USAGE_STATUS
    return int(args.func(resolve_progress(args)) or 0)
