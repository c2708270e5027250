"""Finding a task by name: the built-in ones, or a user's ``Task`` subclass by dotted path.

``load_task("textlm")`` builds a built-in task; ``load_task("mypkg.tasks:MyTask")`` (or
``"mypkg.tasks.MyTask"``) imports the user's module and builds their class with the same
arguments. The module must be importable by the process that calls this — installed, or
its folder on ``PYTHONPATH`` — and that includes every simulated client.

Built-in tasks are found by the same dotted-path mechanism, so importing this module does
not import any task (or scikit-learn) until one is asked for.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from typing import Any

from fedlora.errors import FedloraError
from fedlora.tasks.base import Task

#: built-in task name -> the class that implements it
_BUILT_IN = {
    "textlm": "fedlora.tasks.textlm:TextLMTask",
    "digits": "fedlora.tasks.digits:DigitsTask",
    "synthetic": "fedlora.tasks.synthetic:SyntheticTask",
}
#: the built-in task names, default first
TASK_NAMES: tuple[str, ...] = tuple(_BUILT_IN)
DEFAULT_TASK = "textlm"


def load_task(name: str, *, num_clients: int | None = None, seed: int = 0, **options: Any) -> Task:
    """Build task ``name`` with ``num_clients`` clients (``None``: the task's default).

    ``name`` is a built-in name (:data:`TASK_NAMES`) or the dotted path of a :class:`Task`
    subclass, ``package.module:ClassName`` or ``package.module.ClassName``. ``seed`` picks
    the partitions; ``options`` are the task's own settings (e.g. ``corpus=`` and
    ``context=`` for ``textlm``). Raises FedloraError for an unknown name, a path that does
    not lead to a Task subclass, or options the task does not accept.
    """
    task_class = resolve_task_class(name)
    # seeds key numpy SeedSequences, which take non-negative integers; 32 bits keep them
    # one word, so (seed, client) keys of different seeds never collide
    seed = _whole_number(seed, "seed", 0, 2**32 - 1, "a whole number from 0 to 2**32 - 1")
    arguments = dict(options, seed=seed)
    if num_clients is not None:
        # a user task may not accept None; leaving the argument out means its own default
        arguments["num_clients"] = _whole_number(
            num_clients, "num_clients", 1, None, "a positive whole number (or None for the task's default)"
        )
    _check_signature(task_class, name, arguments)
    return task_class(**arguments)


def resolve_task_class(name: str) -> type[Task]:
    """The Task subclass that ``name`` (built-in name or dotted path) refers to."""
    path = _BUILT_IN.get(name, name)
    if ":" in path:
        module_name, _, class_name = path.partition(":")
    elif "." in path:
        module_name, _, class_name = path.rpartition(".")
    else:
        module_name = class_name = ""
    if not (module_name and class_name):
        raise FedloraError(
            f"unknown task {name!r}; built-in tasks are {', '.join(TASK_NAMES)}, or give your own "
            "Task subclass as package.module:ClassName"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # only a missing *target* module is the user's path being wrong; a module missing
        # inside their code is a bug in it and keeps its traceback
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise
        raise FedloraError(
            f"cannot import module {module_name!r} of task {name!r} ({exc}); install it or put its "
            f"folder on PYTHONPATH. Built-in tasks are {', '.join(TASK_NAMES)}"
        ) from exc
    task_class = getattr(module, class_name, None)
    if task_class is None:
        raise FedloraError(
            f"module {module_name!r} has no {class_name!r}, so task {name!r} cannot be loaded. "
            f"Built-in tasks are {', '.join(TASK_NAMES)}"
        )
    if not (inspect.isclass(task_class) and issubclass(task_class, Task)) or inspect.isabstract(task_class):
        raise FedloraError(
            f"{path!r} is not a concrete subclass of fedlora.tasks.base.Task; subclass Task and "
            f"implement its abstract methods. Built-in tasks are {', '.join(TASK_NAMES)}"
        )
    return task_class


def _whole_number(value: Any, name: str, lowest: int, highest: int | None, expected: str) -> int:
    """``value`` as an int within bounds (numpy integers welcome), else FedloraError."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if lowest <= value and (highest is None or value <= highest):
            return int(value)
    raise FedloraError(f"{name}={value!r} must be {expected}")


def _check_signature(task_class: type[Task], name: str, arguments: dict[str, Any]) -> None:
    """Reject arguments the constructor cannot take, naming the ones it can."""
    signature = inspect.signature(task_class)
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        accepted = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise FedloraError(
            f"task {name!r} does not accept these arguments ({exc}); it takes "
            f"{', '.join(p.name for p in accepted) or 'no arguments'}"
        ) from exc
