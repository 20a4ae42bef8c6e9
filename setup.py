"""Build the optional C accelerators: the lossless depth codecs and the colored point cloud.

``optional=True``: where no compiler is available the install still succeeds and the codecs use
their numpy fallback (same format, slower). Everything else is configured in pyproject.toml.
"""

from setuptools import Extension, setup

# no trapping math: lets GCC vectorise the branch-free float comparisons of the point cloud;
# no wrapv (Python's own flags add -fwrapv, which our C does not rely on): lets it keep the YUY2
# loops in 16-bit lanes (5x faster)
_OPT = (
    ["-O3", "-fno-trapping-math", "-fno-math-errno", "-fno-wrapv"]
    if __import__("os").name != "nt"
    else ["/O2"]
)

setup(
    ext_modules=[
        Extension(
            "rgbdcast.codecs._native",
            ["src/rgbdcast/codecs/_native.c"],
            extra_compile_args=_OPT,
            optional=True,
        ),
        Extension(
            "rgbdcast.geometry._native",
            ["src/rgbdcast/geometry/_native.c"],
            extra_compile_args=_OPT,
            optional=True,
        ),
    ]
)
