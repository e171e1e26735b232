# cffi_modules cannot be declared in pyproject.toml alone (python-cffi/cffi issue 55).
# pykernel._fastcall is a small CPython extension beside the cffi module: the GIL-held
# path for a message that needs no wait (see csrc/python/fastcall.c).
from setuptools import Extension, setup

setup(
    cffi_modules=["build.py:ffibuilder"],
    ext_modules=[
        Extension(
            "pykernel._fastcall",
            ["csrc/python/fastcall.c"],
            extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
