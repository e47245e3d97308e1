"""``python -m ciss_engine`` (also ``PythonSlicer -m ciss_engine`` inside 3D Slicer)."""
import sys

from .cli import main

sys.exit(main())
