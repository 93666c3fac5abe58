"""``python -m quizctl``: the same as the ``quizctl`` console script."""

import sys

from quizctl.cli import main

sys.exit(main())
