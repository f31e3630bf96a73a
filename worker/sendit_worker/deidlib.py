"""deid, imported in one place: quietly, and without the plotting library it would load.

Importing anything under deid.dicom runs deid's pixel cleaner module, which selects matplotlib's
pdf backend and imports pyplot: a third of a second at the start of every run, for plotting
Sendit never does. So the backend is set to deid's own choice first (deid's `use` then has
nothing to switch) and pyplot is registered to load lazily, on first use if ever, with the
standard library's LazyLoader. The same import makes pydicom log a deprecation warning, which
the quiet logging rules (see logs) keep off the console.
"""

from __future__ import annotations

import importlib.util
import sys

from .logs import quiet_libraries


def _defer_pyplot() -> None:
    if "matplotlib.pyplot" in sys.modules:
        return
    import matplotlib

    matplotlib.rcParams["backend"] = "pdf"
    spec = importlib.util.find_spec("matplotlib.pyplot")
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["matplotlib.pyplot"] = module
    spec.loader.exec_module(module)
    matplotlib.pyplot = module  # bound as an import would bind it


_defer_pyplot()
quiet_libraries()

from deid.config import DeidRecipe  # noqa: E402
from deid.dicom.parser import DicomParser  # noqa: E402
from deid.dicom.pixels.detect import has_burned_pixels  # noqa: E402

__all__ = ["DeidRecipe", "DicomParser", "has_burned_pixels"]
