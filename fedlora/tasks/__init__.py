"""Learning problems for fedlora: models, client partitions and the server's public data.

``load_task(name, num_clients=..., seed=..., **options)`` builds one. Built in:

* ``textlm`` (default): a tiny character-level transformer; one client per module of the
  Python standard library, or per file or folder of your own text (``corpus=DIR``);
* ``digits``: scikit-learn's 8×8 digits, label-skewed and rotated per client;
* ``synthetic``: FedProx's Synthetic(α, β), lazily generated, to 10,000 clients and beyond.

Your own: subclass :class:`~fedlora.tasks.base.Task` and pass ``package.module:ClassName``.
"""

from fedlora.tasks.base import Partition, Task
from fedlora.tasks.registry import DEFAULT_TASK, TASK_NAMES, load_task

__all__ = ["DEFAULT_TASK", "TASK_NAMES", "Partition", "Task", "load_task"]
