"""load_task: built-in names, user tasks by dotted path, and errors that list what exists."""

import textwrap

import pytest

from fedlora.errors import FedloraError
from fedlora.tasks import DEFAULT_TASK, TASK_NAMES, Task, load_task
from fedlora.tasks.digits import DigitsTask
from fedlora.tasks.synthetic import SyntheticTask
from fedlora.tasks.textlm import TextLMTask

USER_TASK = '''
    import torch
    from torch import nn
    from fedlora.tasks.base import Partition, Task
    from fedlora.tasks.datasets import LabelledDataset


    class TinyTask(Task):
        name = "tiny"
        default_targets = r"^0$"

        def __init__(self, num_clients=3, seed=0, width=4):
            self._n, self.seed, self.width = num_clients, seed, width

        num_clients = property(lambda self: self._n)
        config = property(lambda self: {"task": "tiny", "width": self.width})
        fingerprint = property(lambda self: "0" * 64)

        def build_model(self):
            return nn.Sequential(nn.Linear(2, self.width), nn.Linear(self.width, 2))

        def client(self, index):
            data = LabelledDataset(torch.zeros(4, 2), torch.zeros(4))
            return Partition(f"tiny:{index}", data, data)

        def public(self):
            return self.client(0)


    class NotATask:
        pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(textwrap.dedent(USER_TASK))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_tasks"


def test_built_in_names_and_default():
    assert TASK_NAMES == ("textlm", "digits", "synthetic") and DEFAULT_TASK == "textlm"
    assert isinstance(load_task("synthetic", num_clients=2), SyntheticTask)
    assert isinstance(load_task("digits", num_clients=2), DigitsTask)
    assert isinstance(load_task("textlm", num_clients=2), TextLMTask)


@pytest.mark.parametrize("spelling", ["my_tasks:TinyTask", "my_tasks.TinyTask"])
def test_user_task_by_dotted_path(user_module, spelling):
    task = load_task(spelling, num_clients=5, seed=2, width=8)
    assert isinstance(task, Task) and task.num_clients == 5 and task.config["width"] == 8


def test_user_task_keeps_its_own_default_client_count(user_module):
    assert load_task("my_tasks:TinyTask").num_clients == 3


def test_built_in_task_by_its_dotted_path():
    assert isinstance(load_task("fedlora.tasks.synthetic:SyntheticTask", num_clients=2), SyntheticTask)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("texltm", "unknown task 'texltm'; built-in tasks are textlm, digits, synthetic"),
        ("no_such_module:Task", "cannot import module 'no_such_module'.*textlm, digits, synthetic"),
        ("my_tasks:Missing", "has no 'Missing'.*textlm, digits, synthetic"),
        ("my_tasks:NotATask", "not a concrete subclass.*textlm, digits, synthetic"),
        ("fedlora.tasks.base:Task", "not a concrete subclass"),
    ],
)
def test_bad_names_list_the_built_in_tasks(user_module, name, message):
    with pytest.raises(FedloraError, match=message):
        load_task(name)


def test_user_task_with_an_option_it_does_not_take(user_module):
    with pytest.raises(FedloraError, match="does not accept.*takes num_clients, seed, width"):
        load_task("my_tasks:TinyTask", depth=3)


def test_built_in_task_with_an_unknown_option_lists_its_options():
    with pytest.raises(FedloraError, match="no option 'gamma'; its options are: alpha=1.0, beta=1.0"):
        load_task("synthetic", gamma=2)


@pytest.mark.parametrize("arguments", [{"num_clients": 0}, {"num_clients": 2.5}, {"seed": -1}, {"seed": 2**32}])
def test_bad_client_count_or_seed(arguments):
    with pytest.raises(FedloraError, match="num_clients|seed"):
        load_task("synthetic", **arguments)


def test_a_bug_inside_a_user_module_keeps_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "buggy_tasks.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="not_installed_dependency"):
        load_task("buggy_tasks:Task")
