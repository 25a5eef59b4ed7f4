"""``python -m basicsr_plugin train|test ...`` (also the module form torchrun needs)."""

import sys

from .cli import main

sys.exit(main())
