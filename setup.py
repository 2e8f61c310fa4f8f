"""Builds the optional C accelerator of the tokenizer; all project metadata is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds and `Tokenizer.encode` uses its
pure-Python path (set CS336_PURE_PYTHON=1 to force that path even when the extension is built).
"""

from setuptools import Extension, setup

HEADERS = ["cs336_core/bpe/_bpe_scan.h", "cs336_core/bpe/_unicode_classes.h"]
setup(ext_modules=[
    Extension("cs336_core.bpe._fastbpe", ["cs336_core/bpe/_fastbpe.c"], depends=HEADERS, optional=True),
    Extension("cs336_core.bpe._fasttrain", ["cs336_core/bpe/_fasttrain.c"], depends=HEADERS, optional=True),
])
