"""`python -m airmigrate.cli`."""

import sys

from airmigrate.cli import main

sys.exit(main())
