"""The agent on a real link: malformed frames from a peer namespace, and the lldp verbs."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from test_discovery_netns import PASS_A, ROOT, NetLab, netlab, wait_for

from discovery import FrameError
from discovery.frames import FrameSpec, build_frame
from discovery.tlv import parse_frame

__all__ = ["netlab"]

PEER = bytes.fromhex("020000000099")
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for i, line in enumerate(sys.stdin):
    s.send(bytes.fromhex(line.strip()))
    if i % 25 == 24:
        time.sleep(0.005)
"""


def frames(count: int, seed: int = 1234) -> list[bytes]:
    """A valid frame, hand-made breakages, and seeded random mutations of it."""
    good = build_frame(FrameSpec(PEER, 4, PEER, 5, b"eth0", 30, system_name="peer"))
    header, body = good[:14], good[14:]
    out = [good]
    out += [header + body[:n] for n in (0, 1, 5, 9, 12)]  # truncations
    out += [header + b"\x02\x07" + body[2:], header + body[9:], header + body + body]
    out += [header + body[:-2] + b"\x12\x00", header + b"\xfe\x00" + body]  # reserved, bad len
    rng = random.Random(seed)
    while len(out) < count:
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(header + bytes(data[: rng.randint(1, len(data))]))
    return out


class TestAgentOnTheWire:
    def test_malformed_frames_are_counted_and_never_crash(self, netlab: NetLab) -> None:
        """Hundreds of bad frames: the agent survives and counts every frame it was sent."""
        a, b = netlab.ns("a"), netlab.ns("b")
        netlab.veth(a, "eth0", b, "eth0")
        ours = netlab.host("a", a, PASS_A, lldp_only=True)
        netlab.wait_ready(ours)
        sent = frames(300)
        bad = 0
        for f in sent:
            try:
                parse_frame(f)
            except FrameError:
                bad += 1
        sender = netlab.exec(b, [sys.executable, "-c", SENDER], stdin=subprocess.PIPE)
        assert sender.stdin is not None
        sender.communicate("".join(f.hex() + "\n" for f in sent), timeout=20)
        assert sender.returncode == 0 and bad > 200

        def counted() -> dict[str, object]:
            s = ours.state("neighbors").get("stats", {})
            return s if s.get("frames") == len(sent) else {}

        stats = wait_for("every frame counted", counted, timeout=15)
        assert ours.state("neighbors")["agent"]["rx_drops"] == 0
        assert stats["rejected_total"] == bad
        assert stats["accepted"] + stats["own"] + bad == len(sent)
        assert ours.proc.poll() is None  # still running
        assert {"truncated", "bad-length", "order"} <= set(stats["rejected"])  # type: ignore[arg-type]


IN_NS_AGENT = """
import sys, time
from discovery.agent import AgentConfig, LldpAgent
from discovery.neighbors import NeighborTable
agent = LldpAgent(AgentConfig(tx_interval=1, hold=30, system_name="disabling"), NeighborTable())
agent.start()
time.sleep(2)
agent.disable_interface("eth0")
time.sleep(0.5)
print(agent.stats().shutdowns_sent, agent.stats().interfaces, flush=True)
time.sleep(30)
"""


class TestDisable:
    def test_disabling_an_interface_sends_shutdown(self, netlab: NetLab) -> None:
        """disable_interface sends TTL 0 at once: the peer forgets us long before TTL 31."""
        a, b = netlab.ns("a"), netlab.ns("b")
        netlab.veth(a, "eth0", b, "eth0")
        peer = netlab.host("peer", b, PASS_A, lldp_only=True)
        netlab.wait_ready(peer)
        agent = netlab.exec(a, [sys.executable, "-c", IN_NS_AGENT], cwd=ROOT,
                            stdout=subprocess.PIPE)  # fmt: skip
        wait_for("peer to see the agent", lambda: "disabling" in peer.neighbors())
        assert agent.stdout is not None
        assert agent.stdout.readline() == "1 ()\n"
        wait_for("peer to take the shutdown",
                 lambda: peer.state("neighbors")["stats"]["shutdowns"] == 1, timeout=2)  # fmt: skip
        assert peer.neighbors() == {}


class TestLldpVerbs:
    def test_send_and_listen(self, netlab: NetLab) -> None:
        """`lldp listen` in one namespace prints what `lldp send` sends from the other."""
        a, b = netlab.ns("a"), netlab.ns("b")
        netlab.veth(a, "eth0", b, "eth0")
        cmd = [sys.executable, "-m", "discovery", "lldp"]
        listen = netlab.exec(a, [*cmd, "listen", "--iface", "eth0", "--count", "2",
                                 "--seconds", "15", "--json"],
                             stdout=subprocess.PIPE, cwd=ROOT)  # fmt: skip
        wait_for("listener to start", lambda: listen.poll() is None)
        send = netlab.exec(b, [*cmd, "send", "--iface", "eth0", "--count", "2", "--interval",
                               "0.5", "--system-name", "sender", "--identity", "b:kernel",
                               "--json"], stdout=subprocess.PIPE, cwd=ROOT)  # fmt: skip
        sent_out, _ = send.communicate(timeout=20)
        assert send.returncode == 0 and json.loads(sent_out)["sent"] == 2
        out, _ = listen.communicate(timeout=20)
        heard = json.loads(out)["frames"]
        assert len(heard) == 2 and all(f["ok"] and f["system_name"] == "sender" for f in heard)
        assert heard[0]["org_tlvs"][0]["oui"] == "0a706b"

    def test_unknown_interface_is_one_line(self, netlab: NetLab) -> None:
        """An interface that is not there gives one line and exit 1."""
        a = netlab.ns("a")
        p = netlab.exec(a, [sys.executable, "-m", "discovery", "lldp", "listen", "--iface",
                            "nope0"], stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
        _, err = p.communicate(timeout=20)
        assert p.returncode == 1
        assert err == "pykernel: interface 'nope0' does not exist in this network namespace\n"
