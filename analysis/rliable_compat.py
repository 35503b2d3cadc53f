"""Import rliable's statistics in spite of arch 7.x failing to import under pandas 3.

rliable 1.2.0 needs ``arch<8`` for its bootstrap, and arch 7.2.0's package ``__init__``
imports ``arch.univariate``, which calls ``pandas.util._decorators.deprecate_kwarg`` with
the pandas 2 signature; pandas 3 changed it, so ``import arch`` raises TypeError. rliable
uses only ``arch.bootstrap``, which does not touch ``arch.univariate``: when the normal
import fails we register ``arch`` as a bare package (no ``__init__`` run) and import
``arch.bootstrap`` from it. Nothing of pandas is patched.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from types import ModuleType


def _import_arch_bootstrap_only() -> None:
    spec = importlib.util.find_spec("arch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("rliable needs the 'arch' package, which is not installed.")
    bare = types.ModuleType("arch")
    bare.__path__ = list(spec.submodule_search_locations)
    bare.__spec__ = spec
    sys.modules["arch"] = bare
    importlib.import_module("arch.bootstrap")


def import_rliable() -> tuple[ModuleType, ModuleType]:
    """Return ``(rliable.library, rliable.metrics)``."""
    if "arch.bootstrap" not in sys.modules:
        try:
            importlib.import_module("arch.bootstrap")
        except TypeError:
            # The pandas-3 incompatibility described above.
            _import_arch_bootstrap_only()
    library = importlib.import_module("rliable.library")
    metrics = importlib.import_module("rliable.metrics")
    return library, metrics
