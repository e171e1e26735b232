"""Servers whose manifests the lint and plan tests wire together (never run by them)."""

from __future__ import annotations

from typing import Any

from control.manifest import manifest, terminal

FRAME = dict(message_size=4096, dtype="float32", shape=(1024,))


@manifest(servername="source", class_hex="0x10", owner="tests",
          terminals=[terminal("frames", "multiplexer", **FRAME)])
def source(ctx: Any) -> None:
    """Produce frames (fan-out)."""


@manifest(servername="worker", class_hex="0x11", owner="tests",
          terminals=[terminal("frames", "input", **FRAME),
                     terminal("results", "output", message_size=64)])
def worker(ctx: Any) -> None:
    """Turn a frame into a small result."""


@manifest(servername="sink", class_hex="0x12", owner="tests", auth_flag=1,
          auth_mechanism="token",
          terminals=[terminal("results", "combiner", message_size=64)])
def sink(ctx: Any) -> None:
    """Collect every result (fan-in)."""


@manifest(servername="relay", class_hex="0x13", owner="tests",
          terminals=[terminal("inp", "input", message_size=64),
                     terminal("out", "output", message_size=64)])
def relay(ctx: Any) -> None:
    """Pass messages on."""


@manifest(servername="tap", class_hex="0x14", owner="tests",
          terminals=[terminal("inp", "input", message_size=64, required=False),
                     terminal("log", "output", message_size=128)])
def tap(ctx: Any) -> None:
    """Listen if wired; its log output is optional."""


def undecorated(ctx: Any) -> None:
    """A callable without a manifest."""


NOT_CALLABLE = 3
