"""memsizer-fairseq is described in pyproject.toml (PEP 517); this shim lets tools that still
call ``setup.py`` read the same description."""
from setuptools import setup

setup()
