"""Errors of the transport comparison.

::

    PykernelError
     └── BenchError            the comparison could not run as asked
          ├── VerifyError      a received message was wrong (sequence, length or content)
          └── TransportError   a peer's endpoint could not be set up or used
"""

from __future__ import annotations

from pykernel._errors import PykernelError


class BenchError(PykernelError):
    """The comparison could not run as asked (bad options, no transport left)."""

    exit_code = 2


class VerifyError(BenchError):
    """A received message did not match what its writer sent.

    The message names the writer, the expected sequence number and what differed.
    """

    exit_code = 1


class TransportError(BenchError):
    """A transport's endpoint could not be set up or used."""

    exit_code = 1
