"""Diagrams: dot, mermaid and svg show servers, terminals, fan-out/fan-in, state and flow."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from test_surface_kit import booted, plan_of

from control import graph
from control.state import Flow


@pytest.fixture
def cx(tmp_path: Path) -> dict[str, Any]:
    """A running system's connectome with one flowing, one broken connection."""
    state = booted(plan_of(tmp_path))
    conns = state.connections_json()
    flowing = next(c["id"] for c in conns if c["target"] == "a.inp")
    state.set_flow(flowing, Flow(messages=900, bytes=57600, msgs_per_s=1500.0,
                                 bytes_per_s=96000.0, fill_pct=12.5, drops=3), "flowing", "t")
    state.server_to("b", "failed", "exit status 1")
    return state.connectome_json()


class TestDot:
    """Graphviz dot text."""

    def test_servers_are_coloured_by_state(self, cx: dict[str, Any]) -> None:
        """Each server is a record node filled with its state's colour."""
        dot = graph.to_dot(cx)
        assert 'label="{<t_inp> inp (input)}|b\\nfailed|{<t_res> res (output)}"' in dot
        assert f'fillcolor="{graph.SERVER_COLOURS["failed"]}"' in dot
        assert f'fillcolor="{graph.SERVER_COLOURS["running"]}"' in dot

    def test_fan_out_and_fan_in_nodes(self, cx: dict[str, Any]) -> None:
        """Multiplexer and combiner pipes are their own nodes with one edge per connection."""
        dot = graph.to_dot(cx)
        assert '"pipe:t.src.out" [shape=trapezium' in dot
        assert '"pipe:t.sink.inp" [shape=invtrapezium' in dot
        assert dot.count('"pipe:t.src.out" -> ') == 2
        assert dot.count(' -> "pipe:t.sink.inp"') == 2
        assert dot.count('"server:src":t_out -> "pipe:t.src.out"') == 1

    def test_edges_carry_flow_and_state(self, cx: dict[str, Any]) -> None:
        """Edge labels show rate, bytes/s, fill and drops; colour is the state's."""
        dot = graph.to_dot(cx)
        assert "flowing · 1.5 kmsg/s · 96.0 kB/s · fill 12% · drops 3" in dot
        assert f'color="{graph.CONNECTION_COLOURS["broken"]}"' in dot

    def test_dot_parses(self, cx: dict[str, Any]) -> None:
        """Graphviz accepts the text without warnings."""
        exe = require_tool("dot")
        done = subprocess.run([exe, "-Tcanon"], input=graph.to_dot(cx).encode(),
                              capture_output=True, check=False)
        assert done.returncode == 0 and not done.stderr, done.stderr

    def test_hostile_names_are_escaped(self, cx: dict[str, Any]) -> None:
        """Quotes, braces and bars in names cannot break the dot syntax."""
        exe = require_tool("dot")
        cx["servers"][0]["name"] = 'x"} | {<y> evil\\'
        done = subprocess.run([exe, "-Tcanon"], input=graph.to_dot(cx).encode(),
                              capture_output=True, check=False)
        assert done.returncode == 0, done.stderr


class TestMermaid:
    """Mermaid flowchart text."""

    def test_shape(self, cx: dict[str, Any]) -> None:
        """Nodes with state classes, fan nodes, labelled edges, one linkStyle per edge."""
        text = graph.to_mermaid(cx)
        assert text.startswith("flowchart LR\n")
        assert ":::failed" in text and ":::fan" in text
        assert 'n_pipe_t_src_out{{"fan-out<br/>t.src.out"}}' in text
        edges = [line for line in text.splitlines() if "-->" in line]
        assert len(edges) == 6  # 1 + 2 fan-out, 2 + 1 fan-in
        assert text.count("linkStyle") == len(edges)
        assert "1.5 kmsg/s" in text


class TestSvg:
    """SVG through Graphviz."""

    def test_svg_is_xml_with_every_server(self, cx: dict[str, Any]) -> None:
        """The SVG parses and names every server and connection."""
        require_tool("dot")
        svg = graph.to_svg(cx)
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg")
        text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
        for server in ("src", "a", "b", "sink", "spare"):
            assert server in text
        assert "fan-out" in text and "fan-in" in text

    def test_svg_without_graphviz(self, cx: dict[str, Any], monkeypatch) -> None:  # type: ignore[no-untyped-def]
        """With no 'dot' on PATH the error says how to get it."""
        cx["servers"][0]["name"] = "never-drawn"  # not the cached drawing
        monkeypatch.setenv("PATH", "")
        assert shutil.which("dot") is None
        with pytest.raises(graph.GraphError, match="apt-get install graphviz"):
            graph.render(cx, "svg")

    def test_unchanged_diagram_is_not_redrawn(self, cx: dict[str, Any], monkeypatch) -> None:  # type: ignore[no-untyped-def]
        """The same dot text is served from the last drawing, without Graphviz."""
        require_tool("dot")
        first = graph.to_svg(cx)
        monkeypatch.setenv("PATH", "")  # a second Graphviz run would now fail
        assert graph.to_svg(cx) == first
        cx["connections"][0]["state"] = "stalled"
        with pytest.raises(graph.GraphError):
            graph.to_svg(cx)

    def test_unknown_format(self, cx: dict[str, Any]) -> None:
        """An unknown format names the ones there are."""
        with pytest.raises(graph.GraphError, match="dot, mermaid, svg"):
            graph.render(cx, "png")
