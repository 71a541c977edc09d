import sys

from medvlm.cli import main

sys.exit(main())
