"""The source distribution carries everything a build from it needs (PEP 517 sdist hook)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _clean_copy(dest: Path) -> Path:
    """The project's files as a fresh clone has them (no egg-info to reuse a manifest from)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_sdist_holds_the_builder_and_every_c_source_and_header(tmp_path: Path) -> None:
    """build.py (cffi_modules), setup.py and all of csrc/ (.c and .h, fast path too)."""
    src = _clean_copy(tmp_path / "src")
    out = tmp_path / "dist"
    hook = f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"
    subprocess.run(
        [sys.executable, "-c", hook], cwd=src, check=True, capture_output=True, timeout=300
    )
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {"build.py", "setup.py", "pyproject.toml"} | {
        str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*") if p.suffix in {".c", ".h"}
    }
    assert any(n.endswith(".h") for n in wanted) and "csrc/python/fastcall.c" in wanted
    assert wanted <= names, sorted(wanted - names)
