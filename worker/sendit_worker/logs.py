"""Logging rules: Sendit's own messages carry counts and pseudonymous references only.

pydicom's and deid's warnings and log records can quote element values (a name, an ID), so
they are silenced wherever Sendit reads DICOM; outcomes and reports say what went wrong instead.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque

import pydicom.config
from deid.logger import bot
from deid.logger.message import QUIET


def quiet_libraries() -> None:
    # Values are checked where it matters (verify); pydicom's per-value checks only warn.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"(pydicom|deid)(\.|$)")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    # PACS clients narrate every request at INFO (pynetdicom two lines per image sent).
    for library in ("pynetdicom", "dicomweb_client"):
        logging.getLogger(library).setLevel(logging.WARNING)
    bot.level = QUIET
    bot.history = deque(maxlen=0)  # deid keeps every message it ever emitted, values included
