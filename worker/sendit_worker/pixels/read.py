"""The text reader: PP-OCRv4's recognition model, from the rapidocr-onnxruntime wheel, asked
whether a detection that no line of glyphs supports reads as text.

The detector sees text in dense textures (ultrasound speckle, Doppler colour, trabecular bone)
where the first look could not judge; blanking those would blank the picture. A detection the
first look's glyphs support is text; one they do not is text only when it reads as at least
two letters or digits with some confidence. Loaded on first need, one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_CHARACTERS = 2
MIN_CONFIDENCE = 0.5


class TextReader:
    def __init__(self) -> None:
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer

        models = Path(rapidocr_onnxruntime.__file__).parent / "models"
        self._recognizer = TextRecognizer(
            {
                "model_path": str(models / "ch_PP-OCRv4_rec_infer.onnx"),
                "rec_img_shape": [3, 48, 320],
                "rec_batch_num": 6,
                "intra_op_num_threads": 1,
                "inter_op_num_threads": 1,
                "use_cuda": False,
                "use_dml": False,
            }
        )
        self.runs = 0

    def reads(self, crops: list[np.ndarray]) -> list[bool]:
        """For each crop (8-bit grey or RGB): does it read as text?"""
        if not crops:
            return []
        rgb = [np.repeat(c[..., np.newaxis], 3, axis=2) if c.ndim == 2 else c for c in crops]
        self.runs += len(rgb)
        results, _ = self._recognizer([np.ascontiguousarray(c) for c in rgb])
        return [
            score >= MIN_CONFIDENCE and sum(ch.isalnum() for ch in text) >= MIN_CHARACTERS
            for text, score in results
        ]
