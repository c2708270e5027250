"""The ServerApp's grid collects replies as they arrive, through Flower's grid calls."""

from types import SimpleNamespace

from fedlora.server.prompt_grid import PromptGrid


class SlowLink:
    """A grid whose reply to message i is there after i + 1 pulls; counts what it was asked."""

    def __init__(self):
        self.pulls = 0
        self.node_ids = [3, 5]

    def push_messages(self, messages):
        return [f"id{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids):
        self.pulls += 1
        ready = [i for i in sorted(message_ids) if int(i[2:]) < self.pulls]
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i)) for i in ready]

    def get_node_ids(self):
        return self.node_ids


def test_replies_are_collected_as_they_arrive_and_other_calls_pass_through():
    link = SlowLink()
    grid = PromptGrid(link, poll_seconds=0.0)
    replies = grid.send_and_receive(["a", "b", "c"], timeout=10)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["id0", "id1", "id2"]
    assert link.pulls == 3  # one pull per reply that came in, none after the last
    assert list(grid.get_node_ids()) == [3, 5]


def test_a_timeout_returns_what_came():
    link = SlowLink()
    link.pull_messages = lambda ids: []  # nothing ever comes back
    assert PromptGrid(link, poll_seconds=0.01).send_and_receive(["a"], timeout=0.05) == []
