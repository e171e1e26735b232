"""The discovery branch of pykernel's exception tree.

::

    PykernelError
     └── DiscoveryError             anything discovery refuses on purpose
          ├── FrameError            a received LLDPDU rejected (reason + byte offset)
          ├── TlvLimitError         a value over an 802.1AB limit, refused at build time
          ├── HintsError            pykernel's organizational TLV malformed (build or parse)
          ├── ScapyMissingError     scapy (the ``discovery`` extra) is not installed
          ├── InterfaceError        an interface that cannot be opened for LLDP
          ├── BeaconError           the beacon failed (one uniform answer, no detail)
          ├── ProbeError            a probe request that cannot be made as written
          ├── DiscoveryConfigError  options (wiring file / CLI) that cannot be used
          └── StateFileError        a run-directory state file unreadable or malformed
"""

from __future__ import annotations

from pykernel import PykernelError


class DiscoveryError(PykernelError):
    """Root of every error the discovery package raises on purpose."""


class FrameError(DiscoveryError):
    """A received LLDPDU that the parser rejects.

    Attributes:
        reason: a short stable word used as the counter key (e.g. ``"truncated"``).
        offset: byte offset into the LLDPDU where the problem was found.

    """

    def __init__(self, reason: str, offset: int, detail: str) -> None:
        super().__init__(f"LLDPDU rejected ({reason}) at byte {offset}: {detail}")
        self.reason = reason
        self.offset = offset


class TlvLimitError(DiscoveryError):
    """A TLV value that does not fit 802.1AB's limits, refused when building a frame."""


class HintsError(DiscoveryError):
    """pykernel's hints TLV is malformed (when parsing) or out of range (when building)."""


class ScapyMissingError(DiscoveryError):
    """scapy, needed to build LLDP frames, is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "scapy is not installed: LLDP frames need the discovery extra "
            "(pip install 'pykernel[discovery]')"
        )


class InterfaceError(DiscoveryError):
    """An interface that cannot be used for LLDP (absent, or the socket refused)."""


class BeaconError(DiscoveryError):
    """The beacon did not authenticate the peer.

    Deliberately carries no detail about *why*: wrong passphrase, replay, reflection,
    expiry and rate limiting all look the same from outside.
    """

    def __init__(self, message: str = "beacon authentication failed") -> None:
        super().__init__(message)


class ProbeError(DiscoveryError):
    """A probe that cannot be attempted as requested (bad target or transport)."""


class DiscoveryConfigError(DiscoveryError):
    """Discovery options that cannot be used; the message names the option and value."""


class StateFileError(DiscoveryError):
    """A discovery state file in the run directory is unreadable or malformed."""
