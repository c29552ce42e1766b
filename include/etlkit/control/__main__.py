import sys

from include.etlkit.control.cli import main

sys.exit(main())
