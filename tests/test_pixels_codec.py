"""Pixels written back losslessly: in their own syntax when a lossless encoder exists, else
native, with the header true to the pixels."""

from __future__ import annotations

import numpy as np
import pydicom
import pydicom.uid as uids
import pytest
from dicomdata import bundled

from sendit_worker.pixels.codec import frames, rewrite


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MR_small_RLE.dcm", uids.RLELossless),
        ("MR_small_jpeg_ls_lossless.dcm", uids.JPEGLSLossless),
        ("MR_small_jp2klossless.dcm", uids.JPEG2000Lossless),
        ("SC_rgb_rle_2frame.dcm", uids.RLELossless),
        ("MR_small_bigendian.dcm", uids.ExplicitVRBigEndian),
        ("SC_rgb_jpeg_dcmtk.dcm", uids.ExplicitVRLittleEndian),  # lossy: never re-encoded
        ("examples_ybr_color.dcm", uids.ExplicitVRLittleEndian),
        ("MR_small_implicit.dcm", uids.ImplicitVRLittleEndian),
    ],
)
def test_blanked_pixels_are_written_back_losslessly(name: str, expected: str) -> None:
    ds = pydicom.dcmread(bundled(name))
    before = frames(ds).copy()
    mask = np.zeros(before.shape[1:3], dtype=bool)
    mask[:5, :7] = True
    syntax = rewrite(ds, [mask] * len(before))
    assert syntax == expected == ds.file_meta.TransferSyntaxUID
    reread = pydicom.dcmread(_saved(ds))
    after = frames(reread)
    assert after.shape == before.shape
    # Outside the mask every sample is what it was (as RGB for colour); inside, one value.
    outside = ~mask
    assert np.array_equal(after[:, outside], before[:, outside])
    assert len(np.unique(after[:, mask].reshape(-1, *after.shape[3:]), axis=0)) == 1


def _saved(ds: pydicom.Dataset):
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return buffer
