"""The worker's exit codes, one source for `sendit`'s help, its commands and the operator. A
Job's podFailurePolicy fails the Job at once on PERMANENT; any other failure is retried within
backoffLimit. A worker pod exits OK whatever its images' outcomes (they are in the batch's
status), so FILES_FAILED comes from `sendit run` only."""

from __future__ import annotations

from typing import Final

OK: Final = 0
INCOMPLETE: Final = 1  # something did not finish: a rerun (or a retry) may complete it
PERMANENT: Final = 2  # usage, manifest or configuration: the same input fails the same way
FILES_FAILED: Final = 3  # the run finished, but files failed for reasons of their own
INTERRUPTED: Final = 128  # plus the signal's number, as a shell reports it: 130, 143

HELP: Final = f"""exit codes:
  {OK}    every image was de-identified or deliberately withheld (and delivered)
  {INCOMPLETE}    incomplete, a rerun may complete it: a service was down, delivery did not
       finish, or files changed on the source during the run
  {PERMANENT}    usage, manifest or configuration error: nothing was done
  {FILES_FAILED}    finished, but some files failed on their own account (truncated, unreadable,
       not de-identifiable; listed in the report): a rerun fails them the same way
  {INTERRUPTED + 2}  interrupted by SIGINT (Ctrl-C); {INTERRUPTED + 15} by SIGTERM: what was written
       stays, rerun to finish"""


def interrupted(signum: int) -> int:
    return INTERRUPTED + signum
