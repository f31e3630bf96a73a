"""A user's own deid recipe, applied on top of the built-in profile.

deid's recipe syntax is the interface. The recipe is parsed once per process; applying it walks
each dataset with deid's parser. Its %filter sections also feed the pixel screen (see pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from sendit_api.errors import Permanent

from .deidlib import DeidRecipe, DicomParser


@dataclass(frozen=True)
class UserRecipe:
    recipe: DeidRecipe

    @classmethod
    def load(cls, path: Path) -> UserRecipe:
        try:
            text = path.read_text()
        except OSError as exc:
            raise Permanent(f"cannot read the recipe: {exc.strerror}") from None
        if not text.lstrip().startswith("FORMAT dicom"):
            raise Permanent("the recipe is not a deid recipe (it must start with FORMAT dicom)")
        try:
            return cls(DeidRecipe(str(path), base=False))
        except SystemExit as exc:  # deid exits on a parse error
            raise Permanent(f"the recipe does not parse (deid exit {exc.code})") from None

    def apply(self, ds: Dataset) -> None:
        if not self.recipe.get_actions():
            return  # a recipe of filters only
        parser = DicomParser(ds, recipe=self.recipe)
        parser.parse(strip_sequences=False, remove_private=False)
