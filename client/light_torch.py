"""Keep ``torch._dynamo`` out of a device's process: about 75 MiB and a second it never uses.

torch wraps many eager-mode functions (``Optimizer.add_param_group``, ``zero_grad``,
``clip_grad_norm_``'s helpers, the Python reference kernels that tensors on the meta
device run, which the device planner's dry runs use) in ``torch._disable_dynamo``, whose
wrapper imports all of ``torch._dynamo`` on its first call only to ask it for an
un-compiled version of the function. A process that never calls ``torch.compile`` runs
every such function un-compiled anyway, so the wrapper's cache slot can hold the function
itself from the start: the wrapper then calls it directly and the import never happens.

:func:`skip_dynamo_import` fills the slot of every such wrapper that exists when it is
called (it finds them through the garbage collector, which tracks every function), and of
every wrapper made later (torch makes some when a module is first imported). It changes no
arithmetic
(tests/node/test_light_torch.py trains and plans with and without it and compares); a
later ``torch.compile`` in the same process would still work, except that these functions
stay un-compiled, which is what they ask for.

``torch.optim``'s own ``step`` imports ``torch._dynamo`` unconditionally, which is why
fedlora trains with :mod:`fedlora.optim`. Activation checkpointing reads
``torch._dynamo.config``: a plan that checkpoints pays the import.
"""

from __future__ import annotations

import functools
import gc
import types

#: torch._compile._disable_dynamo's wrapper, by the name of its code object (torch 2.13)
_WRAPPER = "_disable_dynamo.<locals>.inner"
#: the attribute the wrapper caches its un-compiled function in
_CACHE = "__dynamo_disable"


def skip_dynamo_import() -> int:
    """Make every ``_disable_dynamo`` wrapper, alive now or made later, call its function
    directly. Returns how many existing wrappers it short-circuited."""
    import torch
    import torch._compile

    original = torch._compile._disable_dynamo
    if not getattr(original, "_fedlora_eager", False):

        def eager(fn=None, recursive: bool = True):
            if fn is None:  # used as @torch._disable_dynamo(recursive=False)
                return functools.partial(eager, recursive=recursive)
            setattr(fn, _CACHE, fn)
            return original(fn, recursive)

        eager._fedlora_eager = True
        torch._compile._disable_dynamo = torch._disable_dynamo = eager
    count = 0
    for candidate in gc.get_objects():
        if not isinstance(candidate, types.FunctionType) or candidate.__code__.co_qualname != _WRAPPER:
            continue
        # the function the wrapper calls is its closure's ``fn`` (``__wrapped__`` may have
        # been overwritten by a decorator applied on top)
        cells = dict(zip(candidate.__code__.co_freevars, candidate.__closure__ or ()))
        function = cells["fn"].cell_contents if "fn" in cells else None
        if function is not None and getattr(function, _CACHE, None) is None:
            setattr(function, _CACHE, function)
            count += 1
    return count
