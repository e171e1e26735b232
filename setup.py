# cffi_modules cannot be declared in pyproject.toml alone (python-cffi/cffi issue 55).
from setuptools import setup

setup(cffi_modules=["build.py:ffibuilder"])
