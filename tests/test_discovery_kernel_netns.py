"""Discovery started by `pykernel up` from a wiring file, peers handed to Hostess.

Three hosts in network namespaces on a Linux bridge made here (group_fwd_mask 16384 so
LLDP passes); each runs `pykernel up` on a wiring file whose only server comes from its
`discovery:` section. h1 and h2 share a passphrase file, h3 has another. Everything runs
inside the namespaces; processes, namespaces, shm segments and files are removed even on
failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_root, require_tool
from test_discovery_netns import NetLab, wait_for

from control.hostess import Hostess

ROOT = Path(__file__).resolve().parents[1]
SURFACE_PORT = 7780


class KernelHost:
    """One `pykernel up` in one namespace, with its wiring file, run dir and Hostess."""

    def __init__(self, lab: NetLab, name: str, ns: str, passphrase: str) -> None:
        self.name, self.ns = name, ns
        self.dir = lab.tmp / name
        self.dir.mkdir()
        secret = self.dir / "beacon.secret"
        secret.write_text(passphrase + "\n")
        secret.chmod(0o600)
        (self.dir / "wiring.yaml").write_text(textwrap.dedent(f"""\
            system: lab
            servers: {{}}
            discovery:
              identity: {name}.lab:kernel
              system_name: {name}
              interfaces: [eth0]
              tx_interval: 1
              retry_interval: 1.0
              probe_timeout: 1.0
              control_port: {SURFACE_PORT}
              beacon_port: 7700
              echo_port: 7701
              passphrase_file: beacon.secret
              hostess_db: hostess.sqlite
              tags: [lab]
            """))
        self.run_dir = self.dir / "run"
        argv = [sys.executable, "-m", "pykernel", "up", str(self.dir / "wiring.yaml"),
                "--run-dir", str(self.run_dir), "--surface", f"0.0.0.0:{SURFACE_PORT}",
                "--json-status"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = lab.exec(ns, argv, stdout=subprocess.PIPE, env=env, cwd=self.dir)
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read_status, daemon=True).start()

    def _read_status(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def wait_up(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the kernel's JSON status line saying it is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [e for e in self.events if e["event"] == "up"]
            if up:
                return up[0]
            if self.proc.poll() is not None:
                log = self.run_dir / "discovery.log"
                pytest.fail(f"{self.name}: kernel exited ({self.proc.returncode}) before up: "
                            f"{log.read_text()[-2000:] if log.exists() else ''}")
            time.sleep(0.05)
        pytest.fail(f"{self.name}: kernel not up after {timeout}s: {self.events}")

    def candidates(self) -> dict[str, dict[str, Any]]:
        """Candidates by proven identity, from the discovery server's state file."""
        try:
            doc = json.loads((self.run_dir / "discovery-candidates.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {c["identity"]: c for c in doc.get("candidates", [])}

    def peers(self, expr: str = "tag=peer") -> dict[str, dict[str, Any]]:
        """Hostess guests matching ``expr`` by fqdn (read in this process: cheap to poll)."""
        with Hostess(self.dir / "hostess.sqlite") as book:
            return {g.identity.fqdn: g.to_dict() for g in book.query(expr)}

    def peers_cli(self) -> dict[str, dict[str, Any]]:
        """The same through `pykernel hostess query 'tag=peer' --json --db ...`."""
        out = pykernel("hostess", "query", "tag=peer", "--json", "--db",
                       str(self.dir / "hostess.sqlite"))  # fmt: skip
        return {g["fqdn"]: g for g in out["guests"]}


def pykernel(*args: str) -> dict[str, Any]:
    """Run the `pykernel` command (outside the namespaces: it only reads files)."""
    out = subprocess.run([sys.executable, "-m", "pykernel", *args], capture_output=True,
                         text=True, timeout=30, cwd=ROOT, check=True)  # fmt: skip
    return json.loads(out.stdout)


Lab = tuple[NetLab, KernelHost, KernelHost, KernelHost]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """h1 and h2 share a passphrase, h3 has another; all on one bridge, all kernels up."""
    require_root()
    require_tool("ip")
    from discovery.probe import sweep_stale_segments

    netlab = NetLab()
    try:
        br = netlab.ns("br")
        hosts = []
        for i, passphrase in ((1, "the lab's shared phrase"), (2, "the lab's shared phrase"),
                              (3, "an entirely different phrase")):
            ns = netlab.ns(f"h{i}")
            netlab.veth(ns, "eth0", br, f"p{i}")
            netlab.addr(ns, "eth0", f"10.214.1.{i}/24")
            hosts.append(KernelHost(netlab, f"h{i}", ns, passphrase))
        netlab.bridge(br, "br0", ["p1", "p2", "p3"])
        for h in hosts:
            h.wait_up()
        yield (netlab, *hosts)  # type: ignore[misc]
    finally:
        netlab.close()
        sweep_stale_segments()  # probe segments of a discovery server killed by force


class TestKernelDiscovery:
    def test_same_passphrase_peers_are_candidates_and_hostess_guests(self, lab: Lab) -> None:
        """h1 and h2 vet each other and each finds the other in its Hostess, tagged peer."""
        _, h1, h2, _ = lab
        for me, other in ((h1, h2), (h2, h1)):
            c = wait_for(f"{me.name} to vet {other.name}",
                         lambda me=me, o=other: me.candidates().get(f"{o.name}.lab:kernel"))
            assert c["address"] == f"10.214.1.{other.name[1]}"
            assert [(p["transport"], p["ok"]) for p in c["probes"]] == [
                ("tcp", True), ("udp", True), ("shm", True)]  # fmt: skip
            wait_for(f"{other.name} in {me.name}'s Hostess",
                     lambda me=me, o=other: me.peers().get(f"{o.name}.lab"))
            guest = me.peers_cli()[f"{other.name}.lab"]
            assert guest["servername"] == "kernel" and guest["owner"] == "peer"
            assert (guest["auth_flag"], guest["auth_mechanism"]) == (True, "passphrase")
            assert guest["tags"] == ["discovery", "lab", "peer", "via:eth0"]
            meta = guest["metadata"]
            assert meta["address"] == c["address"] and meta["found_by"] == "lab/discovery"
            assert meta["control_port"] == SURFACE_PORT
            assert guest["lease"]["expires"] == pytest.approx(c["expires_at"], abs=1.0)

    def test_other_passphrase_is_no_guest(self, lab: Lab) -> None:
        """h3 fails the beacon: no Hostess guest on either side, the failure is recorded."""
        _, h1, h2, h3 = lab
        wait_for("h1 to vet h2", lambda: h1.peers().get("h2.lab"))
        wait_for("h3 to record two beacon failures", lambda: len([
            f for f in pykernel("candidates", "--json", "--run-dir", str(h3.run_dir))["failures"]
            if f["stage"] == "beacon"]) == 2)  # fmt: skip
        assert h3.peers_cli() == {} and h3.candidates() == {}
        assert "h3.lab" not in h1.peers() and "h3.lab" not in h2.peers()
        assert set(h1.peers("")) == {"h2.lab"}  # nothing else registered by discovery

    def test_stopped_kernel_leaves_both_hostesses(self, lab: Lab) -> None:
        """h2 stopped: h1 drops it at once (TTL 0), and h2 removed the peers it registered."""
        _, h1, h2, _ = lab
        wait_for("h2 in h1's Hostess", lambda: h1.peers().get("h2.lab"))
        wait_for("h1 in h2's Hostess", lambda: h2.peers().get("h1.lab"))
        os.kill(h2.proc.pid, signal.SIGTERM)  # the kernel stops its discovery server
        assert h2.proc.wait(15) == 0
        wait_for("h2 to leave h1's Hostess", lambda: "h2.lab" not in h1.peers(), timeout=5)
        assert h2.peers_cli() == {}
        assert "h2.lab:kernel" not in h1.candidates()
