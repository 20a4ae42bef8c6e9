"""Build the optional C accelerator of the lossless depth codecs.

``optional=True``: where no compiler is available the install still succeeds and the codecs use
their numpy fallback (same format, slower). Everything else is configured in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rgbdcast.codecs._native",
            ["src/rgbdcast/codecs/_native.c"],
            extra_compile_args=["-O3"] if __import__("os").name != "nt" else ["/O2"],
            optional=True,
        )
    ]
)
