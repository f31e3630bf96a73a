"""deid's coordinates as a mask of the pixels to blank.

A rule's coordinates are `xmin,ymin,xmax,ymax` (deid has already turned `ctpcoordinates`'
`x,y,width,height` into that), `all`, or `from:Field`: the regions of a sequence such as
SequenceOfUltrasoundRegions (RegionLocationMinX0, MinY0, MaxX1, MaxY1, the max inclusive). Each
is applied in the file's order, as deid does: 0 blanks, 1 keeps (so `coordinates all` followed
by `keepcoordinates from:SequenceOfUltrasoundRegions` blanks everything but the image areas).
"""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence

REGION_KEYWORDS = ("RegionLocationMinX0", "RegionLocationMinY0")
REGION_MAX = ("RegionLocationMaxX1", "RegionLocationMaxY1")


class RegionError(ValueError):
    """A rule's coordinates that do not say where (the image is withheld)."""


def blank_mask(
    regions: tuple[tuple[int, str], ...], ds: Dataset, rows: int, columns: int
) -> np.ndarray | None:
    """True where a pixel is to be blanked; None when no rule blanks anything."""
    if not regions:
        return None
    keep = np.ones((rows, columns), dtype=bool)
    for value, spec in regions:
        for x0, y0, x1, y1 in _boxes(spec, ds, rows, columns):
            keep[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = bool(value)
    return None if keep.all() else ~keep


def _boxes(spec: str, ds: Dataset, rows: int, columns: int) -> list[tuple[int, int, int, int]]:
    spec = spec.strip()
    if spec.lower() == "all":
        return [(0, 0, columns, rows)]
    if spec.startswith("from:"):
        return _from_field(spec.removeprefix("from:").strip(), ds)
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in spec.split(","))
    except ValueError:
        raise RegionError("a filter rule's coordinates are not four numbers") from None
    return [(x0, y0, x1, y1)]


def _from_field(field: str, ds: Dataset) -> list[tuple[int, int, int, int]]:
    value = ds.get(field)
    if value is None:
        return []
    items = value if isinstance(value, Sequence) else [value]
    boxes = []
    for item in items:
        if not isinstance(item, Dataset):
            raise RegionError("a filter rule's coordinates name a field that holds no regions")
        if all(k in item for k in (*REGION_KEYWORDS, *REGION_MAX)):
            x0, y0 = (int(item.get(k)) for k in REGION_KEYWORDS)
            x1, y1 = (int(item.get(k)) + 1 for k in REGION_MAX)  # inclusive in DICOM
            boxes.append((x0, y0, x1, y1))
    return boxes
