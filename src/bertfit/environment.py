"""What this process runs on: package versions, and the optional extras a command needs.

- :func:`versions`: the versions of named packages (those installed), plus Python and the platform.
- :func:`require`: one UsageError naming the missing modules and the ``pip install 'bertfit[extra]'``
  line, before a command starts work it cannot finish.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import sys

from bertfit import __version__
from bertfit.errors import UsageError

# The optional extras (pyproject's [project.optional-dependencies]) and the modules each brings.
EXTRAS = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "serve": ("fastapi", "uvicorn"),
    "lora": ("peft",),
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow",),
    "ray": ("ray",),
    "tune": ("optuna",),
}
TRAINING_PACKAGES = ("torch", "transformers", "scikit-learn")


def install_line(extra: str) -> str:
    return f"pip install 'bertfit[{extra}]'"


def importable(module: str) -> bool:
    with contextlib.suppress(ValueError):  # a module half-imported before (find_spec of a bare __spec__)
        return importlib.util.find_spec(module) is not None
    return False


def require(extra: str, command: str, modules: tuple[str, ...] | None = None) -> None:
    """Fail in one line when ``command`` lacks modules of the ``extra`` (all of them unless ``modules``)."""
    missing = [name for name in modules or EXTRAS[extra] if not importable(name)]
    if missing:
        raise UsageError(f"{command} needs {' and '.join(missing)}; install: {install_line(extra)}")


def versions(*packages: str, machine: bool = True) -> dict[str, str]:
    """bertfit's version, each installed package's, and (``machine``) Python, platform and core count."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"bertfit": __version__}
    for name in packages:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    if machine:
        found.update(python=platform.python_version(), platform=f"{sys.platform}-{platform.machine()}",
                     cpu_count=str(os.cpu_count()))
    return found
