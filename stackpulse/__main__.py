"""`python -m stackpulse`."""

import sys

from stackpulse.cli import main

sys.exit(main())
