import sys

from classunlearn.cli import main

sys.exit(main())
