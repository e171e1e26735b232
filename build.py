"""cffi builder for pykernel._core (out-of-line API mode).

The cdef is the declaration block of csrc/pykernel.h (between its cdef markers), with enum
values replaced by ``...`` so the compiler, not this file, supplies every constant.
Build with ``pip install .`` / ``pip wheel .`` (``python -m build`` run from the root is
shadowed by this file's name).
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"


def _cdef() -> str:
    text = (CSRC / "pykernel.h").read_text()
    block = text.split("/* cdef-begin */", 1)[1].split("/* cdef-end */", 1)[0]
    block = re.sub(r"/\*.*?\*/", "", block, flags=re.S)
    return re.sub(r"(\bPK_[A-Z0-9_]+)\s*=\s*[^,\n]+,", r"\1 = ...,", block)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pykernel._core",
    '#include "pykernel.h"',
    sources=[str(p.relative_to(HERE)) for p in sorted(CSRC.glob("pk_*.c"))],
    include_dirs=[str(CSRC.relative_to(HERE))],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    libraries=["rt"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
