"""The compiled parts of streamdrift: the prediction events' column reader (`_scan`) and
the join's common transitions (`_pairing`).

Everything else is in pyproject.toml. The extensions are optional: where they cannot be
built (no C compiler), the worker reads batches in columns with pyarrow and pairs in
Python instead, more slowly.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(
            "streamdrift._scan",
            ["src/streamdrift/_scan.c"],
            optional=True,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "streamdrift._pairing",
            ["src/streamdrift/_pairing.c"],
            optional=True,
            extra_compile_args=FLAGS,
        ),
    ]
)
