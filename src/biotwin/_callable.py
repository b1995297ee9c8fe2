"""Modules that can be called: ``biotwin.fit(...)`` runs :func:`biotwin.fit.fit`.

The public API names the calibration steps after their modules (``biotwin.fit``,
``biotwin.infer``); a submodule import would rebind ``biotwin.fit`` to the module, so the module
itself forwards calls to its main function instead.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def callable_module(module_name: str, function_name: str) -> None:
    """Make the module ``module_name`` callable as its function ``function_name``."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        __doc__ = module.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function_name)(*args, **kwargs)

    module.__class__ = CallableModule
