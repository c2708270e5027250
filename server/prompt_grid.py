"""The ServerApp's grid, collecting replies every 0.1 s instead of every 3 s.

On the Deployment Engine, Flower 1.42's grid (``HttpGrid.send_and_receive``) asks the
SuperLink for replies every 3 s: a round of a train and an evaluate message waits on
average 1.5 s per message for replies that are already there. This grid sends and
collects through the same public calls (``push_messages``, ``pull_messages``) every
``POLL_SECONDS``, as Flower's in-memory simulation grid does; every other call goes to
Flower's grid unchanged. What still paces a deployed round is the
SuperNode, which asks the SuperLink for messages every 3 s while idle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

#: a reply is collected at most this long after it reached the SuperLink
POLL_SECONDS = 0.1


class PromptGrid(Grid):
    def __init__(self, grid: Grid, poll_seconds: float = POLL_SECONDS):
        self.grid = grid
        self.poll_seconds = poll_seconds

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, *args, **kwargs) -> Message:
        return self.grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def get_nodes(self):
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """As Flower's: push, then collect replies until all came or ``timeout`` passed."""
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting and (deadline is None or time.monotonic() < deadline):
            pulled = list(self.pull_messages(waiting))
            replies += pulled
            waiting -= {reply.metadata.reply_to_message_id for reply in pulled}
            if waiting:
                time.sleep(self.poll_seconds)
        return replies
