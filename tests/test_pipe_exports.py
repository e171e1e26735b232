"""The public surface of ``pykernel``: what it exports and that each name is documented."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pykernel

# The contract other packages code against. Adding a name is a decision: add it here too.
EXPECTED = {
    # pipes
    "Pipe", "Writer", "Reader", "Slot", "View", "PipeStats", "ReaderStats", "WriterStats",
    "PipeInfo", "list_pipes", "clean_pipes",
    # errors
    "PykernelError", "UsageError", "PipeError", "ClosedError", "PeerGoneError",
    "WriterGoneError", "ReaderGoneError", "PipeTimeout", "WouldBlock", "PipeFull",
    "PipeEmpty", "GeometryError", "SegmentError", "PipeExistsError", "PipeNotFoundError",
    "PipeNameError", "PipeArgumentError", "PipeBusyError", "MessageSizeError",
    # executor
    "Executor", "ServiceSpec", "ServiceState", "ServiceStatus", "ExecutorStatus",
    "ExecutorPhase", "ExecutorError", "BootError", "SpecError", "builtin_services",
}


class TestExports:
    """``pykernel.__all__`` is the curated public face."""

    def test_all_matches_the_contract(self) -> None:
        """__all__ holds exactly the expected names, each once, sorted."""
        assert set(pykernel.__all__) == EXPECTED
        assert len(pykernel.__all__) == len(EXPECTED)
        assert list(pykernel.__all__) == sorted(pykernel.__all__)

    def test_every_name_resolves(self) -> None:
        """Every exported name is an attribute of the package."""
        missing = [n for n in pykernel.__all__ if not hasattr(pykernel, n)]
        assert missing == []

    def test_every_name_has_a_docstring(self) -> None:
        """Every exported class and function carries its own docstring."""
        undocumented = [n for n in pykernel.__all__
                        if not (inspect.getdoc(getattr(pykernel, n)) or "").strip()]
        assert undocumented == []

    def test_exports_come_from_private_modules(self) -> None:
        """Each name is defined in a private ``pykernel._x`` module and is the same object."""
        for name in pykernel.__all__:
            obj = getattr(pykernel, name)
            module = obj.__module__
            assert module.startswith("pykernel._"), (name, module)
            assert getattr(importlib.import_module(module), name) is obj

    def test_errors_share_one_root(self) -> None:
        """Every exported exception derives from PykernelError."""
        for name in pykernel.__all__:
            obj = getattr(pykernel, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                assert issubclass(obj, pykernel.PykernelError), name

    def test_star_import_gives_the_same_names(self) -> None:
        """``from pykernel import *`` binds exactly __all__."""
        ns: dict[str, object] = {}
        exec("from pykernel import *", ns)  # the import form under test
        assert set(ns) - {"__builtins__"} == EXPECTED

    def test_no_higher_layer_is_imported(self) -> None:
        """Importing pykernel loads neither control nor discovery (layering)."""
        code = ("import sys, pykernel; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                "('control', 'discovery')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60)
        assert out.stdout.strip() == "[]"
