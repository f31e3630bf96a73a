"""deid, imported in one place: quietly, and without the plotting library it would load.

Importing anything under deid.dicom runs deid's pixel cleaner module, which imports matplotlib,
selects its pdf backend and imports pyplot, for plots Sendit never makes. Importing matplotlib
costs a third of a second and needs a writable config directory (under HOME, else TMPDIR): in a
container with a read-only root and neither writable, every run died on it. So while deid loads,
a stand-in answers its `import matplotlib`, `matplotlib.use` and `from matplotlib import pyplot`,
and leaves sys.modules afterwards, so a later `import matplotlib` gets the real one (deid's
plotting, never called, would fail on the stand-in). The same import makes pydicom log a
deprecation warning, which the quiet logging rules (see logs) keep off the console.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

from ..logs import quiet_libraries


@contextlib.contextmanager
def _without_matplotlib() -> Iterator[None]:
    names = ("matplotlib", "matplotlib.pyplot")
    if any(name in sys.modules for name in names):  # loaded already: deid uses it
        yield
        return
    stand_in = types.ModuleType("matplotlib", "a stand-in while deid is imported")
    stand_in.__path__ = []  # a package, as `from matplotlib import pyplot` expects
    stand_in.use = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    stand_in.pyplot = types.ModuleType("matplotlib.pyplot")  # type: ignore[attr-defined]
    sys.modules.update({"matplotlib": stand_in, "matplotlib.pyplot": stand_in.pyplot})
    try:
        yield
    finally:
        for name in names:
            del sys.modules[name]


quiet_libraries()
with _without_matplotlib():
    from deid.config import DeidRecipe
    from deid.dicom.parser import DicomParser
    from deid.dicom.pixels.detect import has_burned_pixels

__all__ = ["DeidRecipe", "DicomParser", "has_burned_pixels"]
