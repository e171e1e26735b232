"""What is measured: the cases (workload x size) and how many messages each uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pykernel.bench._errors import BenchError
from pykernel.bench._transport import Channel

KIB = 1024
MIB = 1024 * KIB
BIG = 64 * KIB  # messages at least this large use the shallow queue depth


@dataclass(frozen=True)
class Case:
    """One measurement every transport can take part in.

    Attributes:
        key: stable id used in JSON (``rtt64``, ``oneway4k``, ``fanout64`` ...).
        workload: ``rtt`` (ping-pong), ``oneway``, ``fanout`` (1→fan) or ``fanin`` (fan→1).
        size: bytes per message.
        fan: readers of a fan-out, writers of a fan-in (1 otherwise).

    """

    key: str
    workload: str
    size: int
    fan: int = 1

    @property
    def writers(self) -> int:
        """Writer processes of the data channel."""
        return self.fan if self.workload == "fanin" else 1

    @property
    def readers(self) -> int:
        """Reader processes of the data channel."""
        return self.fan if self.workload == "fanout" else 1

    def channels(self, depth: int, prefix: str) -> list[Channel]:
        """Return the channels this case needs (``rtt``: ping then pong)."""
        shape = {"rtt": "one", "oneway": "one"}.get(self.workload, self.workload)
        names = ("ping", "pong") if self.workload == "rtt" else ("data",)
        return [
            Channel(shape, self.writers, self.readers, self.size, depth, f"{prefix}.{n}")
            for n in names
        ]


CASES: tuple[Case, ...] = (
    Case("rtt64", "rtt", 64),
    Case("oneway64", "oneway", 64),
    Case("oneway4k", "oneway", 4 * KIB),
    Case("oneway1m", "oneway", MIB),
    Case("fanout64", "fanout", 64, fan=4),
    Case("fanin64", "fanin", 64, fan=4),
)
CASE_KEYS = tuple(c.key for c in CASES)


def _default_counts() -> Mapping[str, int]:
    return {
        "oneway64": 100_000,
        "oneway4k": 30_000,
        "oneway1m": 500,
        "fanout64": 20_000,
        "fanin64": 20_000,
    }


@dataclass(frozen=True)
class BenchConfig:
    """How much to measure and how long to wait.

    Attributes:
        rtt_samples: timed round trips (p99.9 needs thousands).
        rtt_warmup: untimed round trips first.
        counts: messages per writer for each throughput case key.
        depth: queue depth in messages, where the transport lets us choose.
        big_depth: queue depth for messages of 64 KiB and more.
        timeout: seconds one case may take before its processes are killed.
        pin: pin the two sides of a case to different cores (when there are 2+).
        repeat: run each case this many times and keep the median of each metric.
        min_seconds: a throughput case that ends sooner is rerun with more messages.

    """

    rtt_samples: int = 20_000
    rtt_warmup: int = 500
    counts: Mapping[str, int] = field(default_factory=_default_counts)
    depth: int = 256
    big_depth: int = 8
    timeout: float = 60.0
    pin: bool = True
    repeat: int = 1
    min_seconds: float = 0.3

    def __post_init__(self) -> None:
        for name in ("rtt_samples", "depth", "big_depth", "repeat"):
            if getattr(self, name) < 1:
                raise BenchError(f"bench config: {name} must be >= 1, not {getattr(self, name)}")
        if self.rtt_warmup < 0:
            raise BenchError(f"bench config: rtt_warmup must be >= 0, not {self.rtt_warmup}")
        if self.min_seconds < 0:
            raise BenchError(f"bench config: min_seconds must be >= 0, not {self.min_seconds}")
        if self.timeout <= 0:
            raise BenchError(f"bench config: timeout must be > 0, not {self.timeout}")
        for key, n in self.counts.items():
            if key not in CASE_KEYS or key.startswith("rtt"):
                raise BenchError(f"bench config: counts has unknown case {key!r}")
            if n < 1:
                raise BenchError(f"bench config: counts[{key!r}] must be >= 1, not {n}")

    @classmethod
    def quick(cls) -> BenchConfig:
        """Return a config that finishes well under a minute on a 2-core machine."""
        return cls(
            rtt_samples=10_000,  # p99.9 is then the 10th-worst round trip, not the 3rd
            rtt_warmup=200,
            counts={
                "oneway64": 20_000,
                "oneway4k": 5_000,
                "oneway1m": 100,
                "fanout64": 5_000,
                "fanin64": 5_000,
            },
            timeout=20.0,
            min_seconds=0.1,
        )

    def count(self, case: Case) -> int:
        """Messages per writer for ``case`` (round trips for ``rtt``)."""
        if case.workload == "rtt":
            return self.rtt_warmup + self.rtt_samples
        return self.counts.get(case.key, _default_counts()[case.key])

    def depth_for(self, case: Case) -> int:
        """Queue depth for ``case`` (shallow for big messages, like real pipelines)."""
        return self.big_depth if case.size >= BIG else self.depth


def parse_size(text: str) -> int:
    """Parse ``64``, ``4k``, ``4KiB``, ``1m``, ``1MiB`` into bytes.

    Raises:
        BenchError: anything else, naming the bad value.

    """
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": KIB, "m": MIB}.get(t[-1:], 1)
    digits = t[:-1] if mult != 1 else t
    if not digits.isdigit():
        raise BenchError(f"--sizes: cannot read size {text!r} (use e.g. 64, 4KiB, 1MiB)")
    return int(digits) * mult
