"""``python -m BreastTumorSegLib.cli`` runs the ``breasttumorseg`` command."""
import sys

from . import main

sys.exit(main())
