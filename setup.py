"""Build: the domain math (``operators/``), the Avro codecs and the validator compiled to C extensions with mypyc;
everything else stays Python.

The compiled modules run the same code, type-checked by mypy; the decision layer runs 2-2.5x
faster (bench/README.md, throughput), the Avro reader 3-4x, the Avro writer ~2.4x, validation ~1.5x. An editable
install (``pip install -e``, the Makefile's) stays pure Python, so that an edited ``.py`` is what
runs; ``DEMANDSENSE_COMPILE=0`` makes any build pure Python, and so does a machine without a C
compiler (``cc``, or ``$CC``), with a warning. Metadata lives in pyproject.toml.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

# every module of the domain math (operators/__init__.py holds only a docstring), and the ways into and out of it:
# framing, reading and validating each input record, writing each output record
COMPILED = sorted(p.as_posix() for p in Path("operators").glob("*.py") if p.name != "__init__.py")
COMPILED += [f"demandsense/{m}.py" for m in ("avro_reader", "avro_writer", "serde", "validate")]


def ext_modules() -> list:
    if os.environ.get("DEMANDSENSE_COMPILE", "1") == "0" or "editable_wheel" in sys.argv:
        return []
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None:
        print(f"demandsense: no C compiler ({compiler}): building pure Python, without the compiled operators/",
              file=sys.stderr)  # fmt: skip
        return []
    from mypyc.build import mypycify

    # validate.py imports the codecs, and through them fastavro and orjson, which an isolated build does not have:
    # mypy takes what it cannot find as Any (the compiled modules only pass it along)
    return mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3")


setup(ext_modules=ext_modules())
