"""The server runtime: environment parsing, readiness, entries, run()."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykernel.server import (
    ServerContext,
    ServerError,
    TerminalBinding,
    load_entry,
    main,
    parse_terminals,
    ready_when_told,
    run,
)

GOOD = {"pipe": "demo.a.out", "role": "writer", "direction": "output",
        "message_size": 64, "dtype": "float32", "shape": [4, 4]}


def env(**extra: str) -> dict[str, str]:
    base = {"PYKERNEL_SYSTEM": "demo", "PYKERNEL_SERVER": "a", "PYKERNEL_CONNECTOME": "ff",
            "PYKERNEL_TERMINALS": "{}"}
    base.update(extra)
    return base


class TestTerminalsJson:
    """PYKERNEL_TERMINALS is parsed strictly; every error names the terminal and field."""

    def test_round_trip(self) -> None:
        """A binding's JSON reads back to an equal binding."""
        (binding,) = parse_terminals(json.dumps({"out": GOOD})).values()
        assert binding == TerminalBinding("out", "demo.a.out", "writer", "output", 64,
                                          "float32", (4, 4))
        assert binding.to_json() == GOOD

    @pytest.mark.parametrize(
        ("entry", "match"),
        [
            ({**GOOD, "role": "owner"}, r"PYKERNEL_TERMINALS\['out'\].role: must be writer or"),
            ({**GOOD, "message_size": 0}, r"\['out'\].message_size: must be a positive integer"),
            ({**GOOD, "message_size": True}, r"message_size: must be a positive integer"),
            ({**GOOD, "pipe": ""}, r"\['out'\].pipe: must be a pipe name or null"),
            ({**GOOD, "shape": [0]}, r"\['out'\].shape: must be positive integers"),
            ({**GOOD, "dtype": 5}, r"\['out'\].dtype: must be a string or null"),
            ({**GOOD, "colour": "red"}, r"\['out'\]: unknown field 'colour'"),
            ([1, 2], r"\['out'\]: must be an object, got list"),
        ],
    )
    def test_bad_entry_is_named(self, entry: object, match: str) -> None:
        """Each malformed field raises ServerError naming it."""
        with pytest.raises(ServerError, match=match):
            parse_terminals(json.dumps({"out": entry}))

    def test_bad_json_names_position(self) -> None:
        """Broken JSON is reported with its line and column."""
        with pytest.raises(ServerError, match=r"invalid JSON at line 1 column 2"):
            parse_terminals("{oops}")

    def test_not_an_object(self) -> None:
        """The top level must be an object."""
        with pytest.raises(ServerError, match=r"must be a JSON object, got list"):
            parse_terminals("[]")

    @settings(max_examples=200)
    @given(st.text(max_size=200))
    def test_fuzz_text_never_crashes(self, text: str) -> None:
        """Any text either parses or raises ServerError (nothing else escapes)."""
        try:
            result = parse_terminals(text)
        except ServerError:
            return
        assert all(isinstance(b, TerminalBinding) for b in result.values())

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )

    @settings(max_examples=200)
    @given(st.dictionaries(st.sampled_from(sorted(GOOD)), json_values, max_size=6))
    def test_fuzz_entries_never_crash(self, entry: dict[str, object]) -> None:
        """Any JSON entry shape either validates or raises ServerError."""
        try:
            (binding,) = parse_terminals(json.dumps({"t": entry})).values()
        except ServerError:
            return
        assert binding.role in ("writer", "reader") and binding.message_size > 0


class TestContext:
    """ServerContext from the environment; readiness and status on the notify fd."""

    def test_missing_identity(self) -> None:
        """Without PYKERNEL_SERVER the error says what is missing and why."""
        with pytest.raises(ServerError, match=r"PYKERNEL_SERVER is not set: .*pykernel up"):
            ServerContext.from_env({"PYKERNEL_SYSTEM": "demo"})

    def test_bad_notify_fd(self) -> None:
        """A non-numeric notify fd is refused by name."""
        with pytest.raises(ServerError, match=r"PYKERNEL_NOTIFY_FD: not a file descriptor: 'x'"):
            ServerContext.from_env(env(PYKERNEL_NOTIFY_FD="x"))

    def test_fields(self) -> None:
        """Identity, connectome and run dir come from the environment."""
        ctx = ServerContext.from_env(env(PYKERNEL_RUN_DIR="/r",
                                         PYKERNEL_TERMINALS=json.dumps({"out": GOOD})))
        assert (ctx.system, ctx.server, ctx.connectome, ctx.run_dir) == ("demo", "a", "ff", "/r")
        assert ctx.connected("out") and not ctx.connected("nope")

    def test_ready_written_once_and_status(self) -> None:
        """ready() writes READY=1 exactly once; status() writes a STATUS line."""
        r, w = os.pipe()
        try:
            ctx = ServerContext.from_env(env(PYKERNEL_NOTIFY_FD=str(w)))
            ctx.ready()
            ctx.ready()
            ctx.status("warm\nup")
            os.close(w)
            w = -1
            assert os.read(r, 100) == b"READY=1\nSTATUS=warm up\n"
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    def test_no_terminals_is_ready_at_attach_all(self) -> None:
        """A server without terminals is ready as soon as attach_all runs."""
        r, w = os.pipe()
        try:
            ctx = ServerContext.from_env(env(PYKERNEL_NOTIFY_FD=str(w)))
            assert ctx.attach_all() == {}
            assert os.read(r, 100) == b"READY=1\n"
        finally:
            os.close(r)
            os.close(w)

    def test_ready_when_told_waits_for_the_function(self) -> None:
        """A @ready_when_told server is ready when it says so, never before (or at all)."""
        def told(ctx: ServerContext) -> int:
            assert os.read(r, 100) == b"STATUS=checking\n"  # attached, but not ready yet
            ctx.ready()
            return 0

        def refuses(ctx: ServerContext) -> int:
            return 78  # EX_CONFIG before saying ready

        for func, expected, code in ((told, b"READY=1\n", 0),
                                     (refuses, b"STATUS=checking\n", 78)):
            r, w = os.pipe()
            try:
                ctx = ServerContext.from_env(env(PYKERNEL_NOTIFY_FD=str(w)))
                ctx.status("checking")
                assert run(ready_when_told(func), ctx) == code
                os.close(w)
                w = -1
                assert os.read(r, 100) == expected
            finally:
                os.close(r)
                if w >= 0:
                    os.close(w)

    def test_notify_to_closed_kernel_is_harmless(self) -> None:
        """If the kernel's end is gone, readiness is silently dropped (no crash)."""
        r, w = os.pipe()
        os.close(r)
        try:
            old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            ServerContext.from_env(env(PYKERNEL_NOTIFY_FD=str(w))).ready()
        finally:
            signal.signal(signal.SIGPIPE, old)
            os.close(w)

    def test_unknown_terminal(self) -> None:
        """Asking for a terminal the server does not have lists the ones it has."""
        ctx = ServerContext.from_env(env(PYKERNEL_TERMINALS=json.dumps({"out": GOOD})))
        with pytest.raises(ServerError, match=r"'a' has no terminal 'in' \(terminals: out\)"):
            ctx.terminal("in")

    def test_unconnected_terminal(self) -> None:
        """A terminal bound to no pipe cannot be attached."""
        ctx = ServerContext.from_env(
            env(PYKERNEL_TERMINALS=json.dumps({"out": {**GOOD, "pipe": None}})))
        with pytest.raises(ServerError, match=r"terminal 'out' is not connected"):
            ctx.terminal("out")


def manifested(ctx: ServerContext) -> int:
    return 7


class _Manifest:
    terminals = ()


manifested.__pykernel_manifest__ = _Manifest()  # type: ignore[attr-defined]


class TestEntries:
    """module:callable entries and run()."""

    @pytest.mark.parametrize(
        ("entry", "match"),
        [
            ("nocolon", r"entry 'nocolon': expected 'module:callable'"),
            (":f", r"expected 'module:callable'"),
            ("no_such_mod_pk:f", r"cannot import 'no_such_mod_pk'"),
            ("json:nothing_here", r"'json' has no 'nothing_here'"),
            ("json:__name__", r"'__name__' is not callable"),
        ],
    )
    def test_bad_entry(self, entry: str, match: str) -> None:
        """Bad entries raise ServerError naming the entry."""
        with pytest.raises(ServerError, match=match):
            load_entry(entry)

    def test_dotted_attribute(self) -> None:
        """Attributes may be dotted (a class's static method, say)."""
        assert load_entry("json:JSONDecoder.decode") is json.JSONDecoder.decode

    def test_run_returns_func_result(self) -> None:
        """run() returns the server function's integer result."""
        ctx = ServerContext.from_env(env())
        assert run(manifested, ctx) == 7

    def test_run_refuses_terminals_missing_from_manifest(self) -> None:
        """A terminal the function's manifest does not declare is an error."""
        ctx = ServerContext.from_env(env(PYKERNEL_TERMINALS=json.dumps({"out": GOOD})))
        with pytest.raises(ServerError, match=r"terminal 'out' is not in the manifest"):
            run(manifested, ctx)

    def test_main_usage(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Wrong arguments print usage and exit 2."""
        assert main([]) == 2
        assert "usage: python -m pykernel.server module:callable" in capsys.readouterr().err

    def test_main_outside_kernel(self, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """Run outside a kernel: one line naming what is missing, exit 78 (EX_CONFIG)."""
        monkeypatch.delenv("PYKERNEL_SYSTEM", raising=False)
        assert main(["json:dumps"]) == 78
        assert "PYKERNEL_SYSTEM is not set" in capsys.readouterr().err

    def test_sigterm_sets_stopping(self, tmp_path: Path) -> None:
        """Under python -m pykernel.server, SIGTERM sets ctx.stopping and the server ends 0."""
        (tmp_path / "waiter.py").write_text(
            "def run(ctx):\n"
            "    print('waiting', flush=True)\n"
            "    while not ctx.stopping.wait(0.05):\n"
            "        pass\n"
            "    print('stopping seen', flush=True)\n"
        )
        r, w = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pykernel.server", "waiter:run"],
            env={**os.environ, **env(PYKERNEL_NOTIFY_FD=str(w)),
                 "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
            pass_fds=(w,), stdout=subprocess.PIPE, text=True,
        )
        os.close(w)
        try:
            assert os.read(r, 100) == b"READY=1\n"
            assert proc.stdout is not None and proc.stdout.readline() == "waiting\n"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=5)
            assert proc.returncode == 0 and "stopping seen" in out
        finally:
            os.close(r)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_run_from_thread_skips_signal_handlers(self) -> None:
        """run() off the main thread works (no signal handlers installed there)."""
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(run(manifested,
                                                               ServerContext.from_env(env()))))
        t.start()
        t.join()
        assert result == [7]



class TestTerminalsOnRealPipes:
    """Attaching terminals to real pipes; messages() drains after a stop request."""

    @pytest.fixture
    def pipe_name(self) -> Iterator[str]:
        from pykernel import Pipe, PipeNotFoundError

        name = f"st{uuid.uuid4().hex[:12]}"
        yield name
        with contextlib.suppress(PipeNotFoundError):
            Pipe.unlink(name)

    @staticmethod
    def reader_env(pipe_name: str, **extra: str) -> dict[str, str]:
        binding = {**GOOD, "pipe": pipe_name, "role": "reader", "direction": "input",
                   "dtype": None, "shape": None}
        return env(PYKERNEL_TERMINALS=json.dumps({"in": binding}), **extra)

    def test_ready_when_last_terminal_attaches(self, pipe_name: str) -> None:
        """READY=1 goes out exactly when the last connected terminal is attached."""
        from pykernel import Pipe, Reader

        r, w = os.pipe()
        os.set_blocking(r, False)
        try:
            with Pipe.create(pipe_name, slot_size=64, slots=16), \
                    ServerContext.from_env(self.reader_env(pipe_name,
                                                           PYKERNEL_NOTIFY_FD=str(w))) as ctx:
                with pytest.raises(BlockingIOError):
                    os.read(r, 100)  # nothing attached yet: not ready
                reader = ctx.terminal("in")
                assert isinstance(reader, Reader) and ctx.terminal("in") is reader
                assert os.read(r, 100) == b"READY=1\n"
        finally:
            os.close(r)
            os.close(w)

    def test_stop_drains_what_is_queued(self, pipe_name: str) -> None:
        """Messages already in the pipe when the stop comes are still delivered, in order."""
        from pykernel import Pipe

        with Pipe.create(pipe_name, slot_size=64, slots=16) as pipe, \
                ServerContext.from_env(self.reader_env(pipe_name)) as ctx:
            ctx.terminal("in")
            with pipe.writer() as writer:
                for n in range(5):
                    writer.send(b"m%d" % n)
                ctx.stopping.set()
                assert list(ctx.messages("in", poll=0.02)) == [b"m%d" % n for n in range(5)]

    def test_idle_callback_while_empty(self, pipe_name: str) -> None:
        """on_idle runs on every empty poll; a stop request then ends the iteration."""
        from pykernel import Pipe

        with Pipe.create(pipe_name, slot_size=64, slots=16), \
                ServerContext.from_env(self.reader_env(pipe_name)) as ctx:
            idle: list[float] = []

            def on_idle() -> None:
                idle.append(time.monotonic())
                if len(idle) == 3:
                    ctx.stopping.set()

            assert list(ctx.messages("in", poll=0.02, on_idle=on_idle)) == []
            assert len(idle) == 3
