"""The one compiled part of streamdrift: the prediction events' column reader.

Everything else is in pyproject.toml. The extension is optional: where it cannot be built
(no C compiler), the worker reads batches in columns with pyarrow instead, more slowly.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamdrift._scan",
            ["src/streamdrift/_scan.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
