import sys

from recipelib.sandbox.control import main

sys.exit(main())
