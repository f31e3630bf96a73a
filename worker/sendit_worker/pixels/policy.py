"""The batch's pixel policy (spec.deidentify.pixels), as the pool processes get it."""

from __future__ import annotations

from dataclasses import dataclass

CLEAN = "clean"
WITHHOLD = "withhold"


@dataclass(frozen=True)
class PixelPolicy:
    policy: str = CLEAN  # clean | withhold
    # A risk when True: an exact BurnedInAnnotation=NO skips the text detector.
    trust_burned_in_annotation: bool = False
    # A risk when True: images declared to show a face are released (PS3.15's option).
    retain_recognizable_visual_features: bool = False

    def __post_init__(self) -> None:
        if self.policy not in (CLEAN, WITHHOLD):
            raise ValueError(f"pixel policy must be {CLEAN} or {WITHHOLD}")


DEFAULT_PIXELS = PixelPolicy()
