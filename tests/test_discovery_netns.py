"""Discovery between real processes in network namespaces the test makes.

Three hosts on a Linux bridge (group_fwd_mask 16384 so LLDP passes), and a star of direct
veth pairs. Each host runs ``python -m discovery discovery run`` inside its namespace.
Traffic never leaves the namespaces made here; they are deleted even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_root, require_tool

ROOT = Path(__file__).resolve().parents[1]
PASS_A = "same passphrase for the lab"
PASS_B = "another passphrase entirely"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 8.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Host:
    """A discovery process running in one namespace."""

    def __init__(self, name: str, ns: str, proc: subprocess.Popen[str], run_dir: Path) -> None:
        self.name, self.ns, self.proc, self.run_dir = name, ns, proc, run_dir
        self.ready: dict[str, Any] = {}

    def state(self, kind: str) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / f"discovery-{kind}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def neighbors(self) -> dict[str, dict[str, Any]]:
        """Live neighbors by their advertised System Name."""
        now = time.time()
        return {n["system_name"]: n for n in self.state("neighbors").get("neighbors", [])
                if n["expires_at"] > now}  # fmt: skip

    def candidates(self) -> dict[str, dict[str, Any]]:
        """Candidates by proven identity."""
        return {c["identity"]: c for c in self.state("candidates").get("candidates", [])}

    def failures(self) -> list[dict[str, Any]]:
        return self.state("candidates").get("failures", [])


class NetLab:
    """Namespaces, links and processes of one test, all removed by :meth:`close`."""

    def __init__(self) -> None:
        self.prefix = f"pk-{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="pk-lab-"))
        os.chmod(self.tmp, 0o755)  # lldpd (user _lldpd) must reach sockets made here

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        self.ip("netns", "add", full)
        self.namespaces.append(full)
        self.ip("-n", full, "link", "set", "lo", "up")
        subprocess.run(  # link-local IPv6 usable at once, without duplicate detection
            ["ip", "netns", "exec", full, "sh", "-c",
             "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"],
            check=True, timeout=10,
        )  # fmt: skip
        return full

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        self.ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", if_b, "netns", ns_b)
        self.ip("-n", ns_a, "link", "set", if_a, "up")
        self.ip("-n", ns_b, "link", "set", if_b, "up")

    def bridge(self, ns: str, name: str, ports: list[str]) -> None:
        self.ip("-n", ns, "link", "add", name, "type", "bridge")
        subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c",
             f"echo 16384 > /sys/class/net/{name}/bridge/group_fwd_mask"],
            check=True, timeout=10,
        )  # fmt: skip
        for port in ports:
            self.ip("-n", ns, "link", "set", port, "master", name)
        self.ip("-n", ns, "link", "set", name, "up")

    def addr(self, ns: str, ifname: str, cidr: str) -> None:
        self.ip("-n", ns, "addr", "add", cidr, "dev", ifname)

    def exec(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``argv`` in ``ns`` in its own process group; :meth:`close` ends it."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], text=True, start_new_session=True, **kw
        )
        self.procs.append(proc)
        return proc

    def host(self, name: str, ns: str, passphrase: str, lldp_only: bool = False,
             **options: Any) -> Host:  # fmt: skip
        run_dir = self.tmp / name
        run_dir.mkdir()
        cfg = {"identity": f"{name}:kernel", "system_name": name, "tx_interval": 1,
               "hold": 4, "run_dir": str(run_dir), "retry_interval": 1.0,
               "beacon_port": 7700, "control_port": 7700, "echo_port": 7701,
               "probe_timeout": 1.0, **options}  # fmt: skip
        (self.tmp / f"{name}.json").write_text(json.dumps(cfg))
        argv = [sys.executable, "-m", "discovery", "discovery", "run",
                "--config", str(self.tmp / f"{name}.json")]  # fmt: skip
        if lldp_only:
            argv.append("--lldp-only")
        env = {**os.environ, "PYKERNEL_BEACON_PASSPHRASE": passphrase, "PYTHONPATH": str(ROOT)}
        proc = self.exec(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=ROOT)  # fmt: skip
        host = Host(name, ns, proc, run_dir)
        self.hosts.append(host)
        return host

    def wait_ready(self, *hosts: Host, timeout: float = 20.0) -> None:
        for h in hosts:
            assert h.proc.stdout is not None
            sel = selectors.DefaultSelector()
            sel.register(h.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                pytest.fail(f"{h.name} not ready after {timeout}s")
            line = h.proc.stdout.readline()
            if not line:
                err = h.proc.stderr.read() if h.proc.stderr else ""
                pytest.fail(f"{h.name} exited before ready: {err[-2000:]}")
            h.ready = json.loads(line)

    def stop(self, host: Host | subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
        """Signal a host (or process) and reap it; SIGKILL after 5 s."""
        proc = host.proc if isinstance(host, Host) else host
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, OSError):
                self.stop(proc)
        for h in self.hosts:  # a host killed with SIGKILL leaves its shm probe segment
            for seg in Path("/dev/shm").glob(f"pk-probe-{h.proc.pid}-*"):
                seg.unlink(missing_ok=True)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    """A fresh NetLab, always cleaned up (processes, namespaces, files)."""
    require_root()
    require_tool("ip")
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()


Bridged = tuple[NetLab, Host, Host, Host]


@pytest.fixture(scope="module")
def bridged() -> Iterator[Bridged]:
    """Three hosts on one bridge: h1 and h2 share a passphrase, h3 has another.

    h2 runs its beacons over UDP, the others over TCP.
    """
    require_root()
    require_tool("ip")
    lab = NetLab()
    try:
        br = lab.ns("br")
        hosts = []
        plan = ((1, PASS_A, "tcp"), (2, PASS_A, "udp"), (3, PASS_B, "tcp"))
        for i, passphrase, transport in plan:
            ns = lab.ns(f"h{i}")
            lab.veth(ns, "eth0", br, f"p{i}")
            lab.addr(ns, "eth0", f"10.213.1.{i}/24")
            hosts.append(lab.host(f"h{i}", ns, passphrase, beacon_transport=transport))
        lab.bridge(br, "br0", ["p1", "p2", "p3"])
        lab.wait_ready(*hosts)
        yield (lab, *hosts)  # type: ignore[misc]
    finally:
        lab.close()


class TestBridgedHosts:
    def test_neighbors_appear_with_hints(self, bridged: Bridged) -> None:
        """Through the bridge every host sees the two others, with their hints."""
        _, h1, h2, h3 = bridged
        for me, others in ((h1, {"h2", "h3"}), (h2, {"h1", "h3"}), (h3, {"h1", "h2"})):
            seen = wait_for(f"{me.name} to see {others}",
                            lambda me=me, o=others: set(me.neighbors()) == o and me.neighbors())
            for name, n in seen.items():
                assert n["iface"] == "eth0" and n["hints"]["identity"] == f"{name}:kernel"
                assert n["management_addresses"] == [f"10.213.1.{name[1]}"]
                assert n["hints"]["beacon_port"] == 7700 and n["ttl"] == 5

    def test_same_passphrase_becomes_candidate(self, bridged: Bridged) -> None:
        """h1 and h2 probe (tcp, udp, shm) and beacon each other (TCP, UDP): both candidates."""
        _, h1, h2, _ = bridged
        c = wait_for("h1 to vet h2", lambda: h1.candidates().get("h2:kernel"))
        assert [(p["transport"], p["ok"]) for p in c["probes"]] == [
            ("tcp", True), ("udp", True), ("shm", True)]  # fmt: skip
        assert c["address"] == "10.213.1.2" and c["beacon_transport"] == "tcp"
        back = wait_for("h2 to vet h1", lambda: h2.candidates().get("h1:kernel"))
        assert back["beacon_transport"] == "udp"

    def test_other_passphrase_is_not_a_candidate(self, bridged: Bridged) -> None:
        """h3's other passphrase fails the beacon both ways; the failure is recorded."""
        _, h1, _, h3 = bridged
        fail = wait_for("h1 to record h3's beacon failure",
                        lambda: [f for f in h1.failures() if f["stage"] == "beacon"])
        assert fail[0]["detail"] == "beacon authentication failed"
        wait_for("h3 to record failures", lambda: len(h3.failures()) == 2)
        assert "h3:kernel" not in h1.candidates() and h3.candidates() == {}

    def test_cli_shows_neighbors_and_candidates(self, bridged: Bridged) -> None:
        """`neighbors --json` and `candidates` read the running host's state."""
        _, h1, _, _ = bridged
        wait_for("h1 to vet h2", lambda: h1.candidates().get("h2:kernel"))
        cmd = [sys.executable, "-m", "discovery"]
        run = {"capture_output": True, "text": True, "check": True, "cwd": ROOT, "timeout": 30}
        out = subprocess.run([*cmd, "neighbors", "--json", "--run-dir", str(h1.run_dir)], **run)
        data = json.loads(out.stdout)
        assert data["running"] and data["identity"] == "h1:kernel"
        assert {n["system_name"] for n in data["neighbors"]} == {"h2", "h3"}
        assert data["stats"]["rejected_total"] == 0
        text = subprocess.run([*cmd, "candidates", "--run-dir", str(h1.run_dir)], **run)
        assert "h2:kernel" in text.stdout and "1 candidates" in text.stdout
        assert "beacon: beacon authentication failed" in text.stdout


class TestLeaving:
    def test_shutdown_removes_at_once_and_silence_expires(self, netlab: NetLab) -> None:
        """A host that stops sends TTL 0 (gone at once); a killed one expires after its TTL."""
        a = netlab.ns("a")
        b = netlab.ns("b")
        c = netlab.ns("c")
        netlab.veth(a, "to-b", b, "eth0")
        netlab.veth(a, "to-c", c, "eth0")
        netlab.addr(a, "to-b", "10.213.2.1/24")
        netlab.addr(b, "eth0", "10.213.2.2/24")
        netlab.addr(a, "to-c", "10.213.3.1/24")
        netlab.addr(c, "eth0", "10.213.3.3/24")
        ha = netlab.host("a", a, PASS_A)
        hb = netlab.host("b", b, PASS_A, hold=30)  # TTL 31: only a shutdown removes it fast
        hc = netlab.host("c", c, PASS_A, hold=2)  # TTL 3
        netlab.wait_ready(ha, hb, hc)
        seen = wait_for("a to see b and c on two interfaces",
                        lambda: len(ha.neighbors()) == 2 and ha.neighbors())  # fmt: skip
        assert {n["iface"] for n in seen.values()} == {"to-b", "to-c"}
        wait_for("a to vet b", lambda: ha.candidates().get("b:kernel"))

        netlab.stop(hb)  # SIGTERM: shutdown LLDPDU
        t0 = time.monotonic()
        wait_for("b to vanish on TTL 0", lambda: "b" not in ha.neighbors(), timeout=3)
        assert time.monotonic() - t0 < 3 < 31
        wait_for("b's candidate to be dropped", lambda: "b:kernel" not in ha.candidates(), 3)
        assert ha.state("neighbors")["stats"]["shutdowns"] == 1

        # A killed host sends no shutdown: c must age out, and not before its TTL counted from
        # the last frame a heard. Measured from the table's own last_seen (wall clock, like
        # the table's), not from a fixed sleep, so a slow machine cannot fail it.
        heard = {"last_seen": 0.0, "ttl": 0}

        def c_expired() -> bool:
            state = ha.state("neighbors")
            for n in state.get("neighbors", []):
                if n["system_name"] == "c":  # a frame in flight at the kill may move it on
                    heard.update(last_seen=max(heard["last_seen"], n["last_seen"]), ttl=n["ttl"])
            return state.get("stats", {}).get("expired") == 1

        assert not c_expired() and heard["ttl"] == 3, heard  # tx_interval 1 * hold 2 + 1
        netlab.stop(hc, signal.SIGKILL)
        wait_for("a to expire c", c_expired, 8)
        gone_seen_at = time.time()
        # The table drops c only once now >= last_seen + ttl; we look after it did.
        assert gone_seen_at >= heard["last_seen"] + heard["ttl"], (gone_seen_at, heard)
        assert [n["system_name"] for n in ha.state("neighbors")["neighbors"]] == []

    def test_interface_appearing_and_disappearing(self, netlab: NetLab) -> None:
        """A link added after start is picked up; down or deleted, its neighbors are gone."""
        a = netlab.ns("a")
        b = netlab.ns("b")
        ha = netlab.host("a", a, PASS_A, lldp_only=True)
        hb = netlab.host("b", b, PASS_A, lldp_only=True)
        netlab.wait_ready(ha, hb)
        assert ha.state("neighbors")["interfaces"] == []
        netlab.veth(a, "late0", b, "late1")
        wait_for("a to see b on the new link", lambda: "b" in ha.neighbors())
        netlab.ip("-n", a, "link", "set", "late0", "down")
        wait_for("a to forget b on a down link", lambda: ha.neighbors() == {}, timeout=4)
        netlab.ip("-n", a, "link", "set", "late0", "up")
        wait_for("a to see b again", lambda: "b" in ha.neighbors())
        netlab.ip("-n", a, "link", "del", "late0")
        wait_for("a to forget b", lambda: ha.neighbors() == {} and
                 ha.state("neighbors")["interfaces"] == [], timeout=4)  # fmt: skip


class TestAsKernelServer:
    def test_runs_under_the_server_runtime(self, netlab: NetLab, tmp_path: Path) -> None:
        """`python -m pykernel.server discovery.servers:lldp_agent` advertises until SIGTERM."""
        a, b = netlab.ns("a"), netlab.ns("b")
        netlab.veth(a, "eth0", b, "eth0")
        peer = netlab.host("peer", b, PASS_A, lldp_only=True)
        options = {"tx_interval": 1, "system_name": "as-server", "identity": "srv:kernel"}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYKERNEL_SYSTEM": "lab",
               "PYKERNEL_SERVER": "lldp", "PYKERNEL_RUN_DIR": str(tmp_path),
               "PYKERNEL_DISCOVERY_OPTIONS": json.dumps(options)}  # fmt: skip
        server = netlab.exec(a, [sys.executable, "-m", "pykernel.server",
                                 "discovery.servers:lldp_agent"], env=env, cwd=ROOT,
                             stderr=subprocess.PIPE)  # fmt: skip
        netlab.wait_ready(peer)
        n = wait_for("peer to see the server", lambda: peer.neighbors().get("as-server"))
        assert n["hints"]["identity"] == "srv:kernel"
        wait_for("the server's state file", (tmp_path / "discovery-neighbors.json").exists)
        netlab.stop(server)
        assert server.returncode == 0
        wait_for("the server's shutdown", lambda: peer.neighbors() == {}, timeout=3)
        assert not (tmp_path / "discovery-neighbors.json").exists()


class TestIpv6LinkLocal:
    def test_vetting_over_link_local_ipv6(self, netlab: NetLab) -> None:
        """With no IPv4 at all, probe and beacon use the fe80:: address, scoped to the link."""
        a, b = netlab.ns("a"), netlab.ns("b")
        netlab.veth(a, "eth0", b, "eth0")
        ha = netlab.host("a", a, PASS_A)
        hb = netlab.host("b", b, PASS_A)
        netlab.wait_ready(ha, hb)
        c = wait_for("a to vet b over IPv6", lambda: ha.candidates().get("b:kernel"))
        assert c["address"].startswith("fe80::")
        assert [(p["transport"], p["ok"]) for p in c["probes"]] == [
            ("tcp", True), ("udp", True), ("shm", True)]  # fmt: skip
