import sys

from recipelib.sandbox.cli import main

sys.exit(main())
