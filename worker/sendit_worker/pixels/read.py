"""The text reader: PP-OCRv4's recognition model, from the rapidocr-onnxruntime wheel, asked
whether a detection that no line of glyphs supports reads as text.

The detector sees text in dense textures (ultrasound speckle, Doppler colour, trabecular bone)
where the first look could not judge; blanking those would blank the picture. A detection the
first look's glyphs support is text; one they do not is text only when it reads as at least
two letters or digits with some confidence. Loaded on first need, one thread.
"""

from __future__ import annotations

import numpy as np

from .detect import rapidocr, session

MIN_CHARACTERS = 2
MIN_CONFIDENCE = 0.5
# A crop is read a piece at a time, each at most this many times as wide as high: a long box
# read at once makes the network's memory grow with it (hundreds of MB at 40:1).
PIECE_ASPECT = 12


class TextReader:
    def __init__(self) -> None:
        from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer

        model = rapidocr() / "models" / "ch_PP-OCRv4_rec_infer.onnx"
        self._recognizer = TextRecognizer(
            {
                "model_path": str(model),
                "rec_img_shape": [3, 48, 320],
                "rec_batch_num": 1,
                "intra_op_num_threads": 1,
                "inter_op_num_threads": 1,
                "use_cuda": False,
                "use_dml": False,
            }
        )
        # Its session again, with the detector's memory settings (see detect): crops of every
        # width would otherwise each keep a planned pattern.
        self._recognizer.session.session = session(model)
        self.runs = 0

    def reads(self, crops: list[np.ndarray]) -> list[bool]:
        """For each crop (8-bit grey or RGB): does any piece of it read as text?"""
        return [any(self._reads(piece) for piece in _pieces(crop)) for crop in crops]

    def _reads(self, crop: np.ndarray) -> bool:
        rgb = np.repeat(crop[..., np.newaxis], 3, axis=2) if crop.ndim == 2 else crop
        self.runs += 1
        ((text, score),), _ = self._recognizer([np.ascontiguousarray(rgb)])
        return score >= MIN_CONFIDENCE and sum(ch.isalnum() for ch in text) >= MIN_CHARACTERS


def _pieces(crop: np.ndarray) -> list[np.ndarray]:
    """The crop in pieces of at most PIECE_ASPECT times its height, overlapping by a height
    (a word cut by one piece's edge is whole in the next)."""
    rows, columns = crop.shape[:2]
    width = max(1, PIECE_ASPECT * rows)
    if columns <= width:
        return [crop]
    step = width - rows
    return [crop[:, x : x + width] for x in range(0, columns - rows, step)]
