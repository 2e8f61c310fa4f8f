"""Builds the optional C accelerator of the tokenizer; all project metadata is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds and `Tokenizer.encode` uses its
pure-Python path (set CS336_PURE_PYTHON=1 to force that path even when the extension is built).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("cs336_core.bpe._fastbpe", ["cs336_core/bpe/_fastbpe.c"], optional=True)])
