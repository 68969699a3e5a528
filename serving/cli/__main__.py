"""`python -m serving.cli`: the `ganserve` command."""

import sys

from . import main

sys.exit(main())
