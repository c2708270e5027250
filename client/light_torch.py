"""Keep ``torch._dynamo`` out of a device's process: about 80 MiB and a second it never uses.

torch wraps some eager-mode functions (``Optimizer.add_param_group``, ``zero_grad``,
``clip_grad_norm_``'s helpers) in ``torch._disable_dynamo``, whose wrapper imports
all of ``torch._dynamo`` on its first call only to ask it for an un-compiled version of
the function. A process that never calls ``torch.compile`` runs every such function
un-compiled anyway, so the wrapper's cache slot can hold the function itself from the
start: the wrapper then calls it directly and the import never happens.

:func:`skip_dynamo_import` fills those slots for the modules the fedlora trainer calls
into. It changes no arithmetic (tests/node/test_light_torch.py trains with and without it
and compares bit for bit); a later ``torch.compile`` in the same process would still work,
except that these few functions stay un-compiled, which is what they ask for.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

#: where the wrapped functions the trainer reaches live (torch 2.13)
TRAINER_MODULES = (
    "torch.optim.optimizer",
    "torch.optim.adam",
    "torch.optim.sgd",
    "torch.nn.utils.clip_grad",
)
#: torch._compile._disable_dynamo's wrapper, by the name of its code object
_WRAPPER = "_disable_dynamo.<locals>.inner"
#: the attribute the wrapper caches its un-compiled function in
_CACHE = "__dynamo_disable"


def _wrapped_functions(module_name: str) -> Iterator:
    module = importlib.import_module(module_name)
    owners = [module, *(value for value in vars(module).values() if inspect.isclass(value) and value.__module__ == module_name)]
    for owner in owners:
        for value in vars(owner).values():
            function = getattr(value, "__func__", value)  # staticmethod/classmethod
            code = getattr(function, "__code__", None)
            if code is not None and code.co_qualname == _WRAPPER:
                yield function.__wrapped__


def skip_dynamo_import(modules: tuple[str, ...] = TRAINER_MODULES) -> int:
    """Make the ``_disable_dynamo`` wrappers in ``modules`` call their function directly.
    Returns how many wrappers were short-circuited."""
    count = 0
    for name in modules:
        for function in _wrapped_functions(name):
            if getattr(function, _CACHE, None) is None:
                setattr(function, _CACHE, function)
                count += 1
    return count
