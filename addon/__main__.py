"""``python -m addon``: run LLMFlow's proxy."""

import sys

from addon.runner import main

sys.exit(main())
