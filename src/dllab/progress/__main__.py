"""`python -m dllab.progress [show|off|on] [--work DIR]`."""

import sys

from dllab.progress.report import main

sys.exit(main())
