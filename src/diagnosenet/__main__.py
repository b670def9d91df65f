import sys

from diagnosenet.cli import main

sys.exit(main())
