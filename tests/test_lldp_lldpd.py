"""Interop with Debian's lldpd, an independent LLDP implementation, both ways.

lldpd runs in its own namespace on one end of a veth pair, our agent on the other.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require_root, require_tool
from test_discovery_netns import PASS_A, Host, NetLab, netlab, wait_for

from discovery import Hints

__all__ = ["netlab"]  # the fixture, re-used from the namespace tests


class Lldpd:
    """lldpd in the foreground with a private socket, pid file and configuration."""

    def __init__(self, lab: NetLab, ns: str, iface: str) -> None:
        self.dir = lab.tmp / "lldpd"
        self.dir.mkdir()
        self.dir.chmod(0o755)  # the _lldpd user must reach the socket
        conf = self.dir / "lldpd.conf"
        conf.write_text("configure system hostname lldpd-peer\nconfigure lldp tx-interval 1\n")
        self.sock = self.dir / "lldpd.sock"
        self.proc = lab.exec(
            ns,
            ["lldpd", "-dd", "-u", str(self.sock), "-p", str(self.dir / "lldpd.pid"),
             "-I", iface, "-O", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for("lldpd's socket", self.sock.exists)

    def neighbors(self) -> list[dict[str, Any]]:
        """lldpcli's neighbors (json0), one dict per interface entry."""
        out = subprocess.run(
            ["lldpcli", "-u", str(self.sock), "-f", "json0", "show", "neighbors", "details"],
            capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
        return [i for entry in json.loads(out.stdout)["lldp"] for i in entry.get("interface", [])]


Pair = tuple[NetLab, Host, Lldpd]


def make_pair(lab: NetLab) -> Pair:
    """Our agent in namespace a, lldpd in b, one veth between them."""
    require_tool("lldpd")
    require_tool("lldpcli")
    a, b = lab.ns("a"), lab.ns("b")
    lab.veth(a, "eth0", b, "eth0")
    lab.addr(a, "eth0", "10.213.9.1/24")
    lldpd = Lldpd(lab, b, "eth0")
    ours = lab.host("a", a, PASS_A, lldp_only=True)
    lab.wait_ready(ours)
    return lab, ours, lldpd


@pytest.fixture(scope="module")
def shared_pair() -> Iterator[Pair]:
    """One pair for the tests that only look."""
    require_root()
    lab = NetLab()
    try:
        yield make_pair(lab)
    finally:
        lab.close()


@pytest.fixture
def pair(netlab: NetLab) -> Pair:
    """A pair of its own, for a test that stops one side."""
    return make_pair(netlab)


def first(entry: dict[str, Any], *path: str) -> Any:
    """Walk json0's lists-of-one-dict down ``path``."""
    node: Any = entry
    for key in path:
        node = node[key][0] if isinstance(node[key], list) else node[key]
    return node


class TestOurFramesInLldpd:
    def test_lldpcli_shows_us_with_our_custom_tlv(self, shared_pair: Pair) -> None:
        """lldpd accepts our frames: names, IDs, address and our hints as an unknown TLV."""
        _, _, lldpd = shared_pair
        seen = wait_for("lldpd to list us", lldpd.neighbors)
        n = seen[0]
        assert first(n, "chassis", "name", "value") == "a"
        assert first(n, "chassis", "mgmt-ip", "value") == "10.213.9.1"
        assert first(n, "port", "id") == {"type": "ifname", "value": "eth0"}
        assert first(n, "port", "ttl", "value") == "5"
        tlv = first(n, "unknown-tlvs", "unknown-tlv")
        hints = Hints(identity="a:kernel", control_port=7700, transports=("tcp", "udp", "shm"))
        assert (tlv["oui"], tlv["subtype"]) == ("0A,70,6B", "1")
        assert bytes.fromhex(tlv["value"].replace(",", "")) == hints.encode()

    def test_our_shutdown_removes_us_from_lldpd(self, pair: Pair) -> None:
        """When we stop, our TTL 0 frame makes lldpd forget us well before our TTL (5 s)."""
        lab, ours, lldpd = pair
        wait_for("lldpd to list us", lldpd.neighbors)
        lab.stop(ours)
        wait_for("lldpd to forget us", lambda: lldpd.neighbors() == [], timeout=2.5)


class TestLldpdFramesInOurs:
    def test_lldpd_appears_in_our_table(self, shared_pair: Pair) -> None:
        """lldpd's frames parse cleanly into our neighbor table."""
        _, ours, _ = shared_pair
        n = wait_for("us to see lldpd", lambda: ours.neighbors().get("lldpd-peer"))
        assert n["iface"] == "eth0" and n["ttl"] == 4 and n["hints"] is None
        assert "Linux" in n["system_description"]
        stats = ours.state("neighbors")["stats"]
        assert stats["rejected_total"] == 0 and stats["accepted"] >= 1

    def test_lldpd_shutdown_removes_it(self, pair: Pair) -> None:
        """lldpd's own shutdown LLDPDU removes it from our table at once."""
        lab, ours, lldpd = pair
        wait_for("us to see lldpd", lambda: ours.neighbors().get("lldpd-peer"))
        lab.stop(lldpd.proc)
        wait_for("lldpd's shutdown", lambda: ours.state("neighbors")["stats"]["shutdowns"] == 1,
                 timeout=3)  # fmt: skip
        assert ours.state("neighbors")["neighbors"] == []


