"""The fedlora ClientApp: unpack a Flower message, call the library, pack the reply.

``app`` reads its settings from Flower's run config (``flwr run .``, deployments);
``make_client_app(settings)`` binds them directly (``fedlora simulate``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from fedlora import protocol
from fedlora.client.dropout import drops_out
from fedlora.client.local_round import ClientEnvironment, describe, evaluate_round, train_round
from fedlora.errors import FedloraError
from fedlora.settings import FederationSettings

Handler = Callable[[FederationSettings, RecordDict, ClientEnvironment], RecordDict]


def _unless_dropped(handler: Handler) -> Handler:
    """``handler``, failing first when ``--dropout`` drops this client this round."""

    def run(settings: FederationSettings, content: RecordDict, environment: ClientEnvironment) -> RecordDict:
        if drops_out(settings, protocol.instruction_round(content), environment.partition_id):
            raise RuntimeError(f"simulated dropout (--dropout {settings.dropout:g})")
        return handler(settings, content, environment)

    return run


def make_client_app(settings: FederationSettings | None = None, mods: list[Mod] | None = None) -> ClientApp:
    app = ClientApp(mods=mods)

    def reply(handler: Handler, message: Message, context: Context) -> Message:
        # One simulated client per CPU: torch's own thread pool would oversubscribe it.
        torch.set_num_threads(1)
        try:
            resolved = settings or FederationSettings.from_run_config(dict(context.run_config))
            environment = ClientEnvironment.from_node_config(dict(context.node_config), resolved)
            return Message(handler(resolved, message.content, environment), reply_to=message)
        except Exception as error:  # Flower sends it to the server as an error reply
            partition = context.node_config.get("partition-id")
            raise FedloraError(protocol.failure_reason(partition if isinstance(partition, int) else None, error)) from error

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        return reply(_unless_dropped(train_round), message, context)

    @app.evaluate()
    def _evaluate(message: Message, context: Context) -> Message:
        return reply(evaluate_round, message, context)

    @app.query()
    def _query(message: Message, context: Context) -> Message:
        return reply(describe, message, context)

    return app


app = make_client_app()
