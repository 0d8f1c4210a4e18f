"""``python -m daskglm.cli``: the ``daskglm`` command line."""

import sys

from . import main

sys.exit(main())
