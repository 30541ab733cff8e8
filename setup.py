"""Build hook: compile colphot's numba kernels for the building machine into the package.

``pip install .`` then installs them ready to use: the first tile of a fresh install measures
without JIT compilation (``colphot._warmup.prebuild``; ``COLPHOT_PREBUILD=0`` skips it, and an
editable install never runs it). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithKernels(build_py):
    """``build_py``, then the kernels compiled into ``build_lib`` (best effort)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("COLPHOT_PREBUILD") == "0":
            return
        sys.path.insert(0, os.path.abspath(self.build_lib))
        try:
            from colphot._warmup import prebuild

            seconds, n = prebuild(self.build_lib, n_jobs=min(os.cpu_count() or 1, 2))
            print(f"colphot: compiled the kernels for this machine ({n} cache files) in "
                  f"{seconds:.1f} s")
        except Exception as exc:  # noqa: BLE001 -- the kernels then compile on first use
            print(f"colphot: kernels not prebuilt ({exc!r}); they compile on first use",
                  file=sys.stderr)
        finally:
            sys.path.pop(0)


setup(cmdclass={"build_py": BuildPyWithKernels})
