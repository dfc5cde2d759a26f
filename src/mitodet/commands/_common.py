"""What every ``mitodet`` subcommand shares: one error style and one exit-code rule.

Errors go to stderr as ``mitodet <command>: error: <what is wrong and the fix>``.

Exit codes (the same for every command):

- ``0`` success;
- ``1`` the job ran but some inputs failed (``detect``: the others are done, each failure is
  in ``summary.csv`` with its reason);
- ``2`` a usage or input error, found before any heavy work (bad flag value, missing or
  malformed file): nothing was run;
- ``3`` the job stopped itself on a runtime failure it detected (``train``: the loss became
  non-finite); its last checkpoint is kept;
- ``130`` interrupted (Ctrl-C); resumable jobs continue where they stopped.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130


def fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print ``mitodet <command>: error: <message>`` to stderr and return ``code``."""
    print(f"mitodet {command}: error: {message}", file=sys.stderr)
    return code
