"""discovery: optional servers that find peer kernels.

LLDP frames and agent, neighbor table, probe, beacon and the candidate cache. Imports
``pykernel`` only; reports through listeners (:class:`NeighborListener`,
:class:`CandidateListener`), never into control's internals. Importing this package does
not import scapy: only building frames needs it.
"""

from __future__ import annotations

from discovery._errors import (
    BeaconError,
    DiscoveryConfigError,
    DiscoveryError,
    FrameError,
    HintsError,
    InterfaceError,
    ProbeError,
    ScapyMissingError,
    StateFileError,
    TlvLimitError,
)
from discovery.candidates import Candidate, CandidateCache, CandidateListener
from discovery.hints import Hints
from discovery.neighbors import Neighbor, NeighborListener, NeighborTable
from discovery.probe import ProbeResult

__all__ = [
    "BeaconError",
    "Candidate",
    "CandidateCache",
    "CandidateListener",
    "DiscoveryConfigError",
    "DiscoveryError",
    "FrameError",
    "Hints",
    "HintsError",
    "InterfaceError",
    "Neighbor",
    "NeighborListener",
    "NeighborTable",
    "ProbeError",
    "ProbeResult",
    "ScapyMissingError",
    "StateFileError",
    "TlvLimitError",
]
