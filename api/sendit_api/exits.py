"""The worker's exit codes. A Job's podFailurePolicy fails the Job at once on PERMANENT; any
other failure is retried within backoffLimit."""

from __future__ import annotations

from typing import Final

OK: Final = 0
INCOMPLETE: Final = 1  # something did not finish: a rerun (or a retry) may complete it
PERMANENT: Final = 2  # usage, manifest or configuration: the same input fails the same way
