"""``python -m daskglm.cli``: the ``daskglm`` command line."""

import sys

from daskglm.cli import main

sys.exit(main())
