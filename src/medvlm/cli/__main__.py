"""`python -m medvlm.cli ...` (what `torchrun -m medvlm.cli train ...` runs in each process)."""

import sys

from medvlm.cli import main

sys.exit(main())
