"""``fedlora-node``: a Flower SuperNode that runs fedlora's ClientApp inside its own process.

Flower's SuperNode, by default, starts ``flower-superexec``, which starts a new
``flwr-clientapp`` process for every message. Each imports torch and flwr again (seconds
on a Raspberry Pi) and, while one exits as the next starts, a node holds three Python
processes at once: on the default task that peaked at 606–676 MiB of unique memory, more
than a Pi Zero 2 W has.

``fedlora-node`` is ``flower-supernode --isolation process`` — Flower's own SuperNode, with
every option of it (TLS, node authentication, ``--node-config``, ``--port``) — plus, in a
thread of the same process, the loop that ``flower-superexec`` and ``flwr-clientapp``
otherwise run: acquire the next ClientApp task from the SuperNode's Runtime API, pull its
message, run fedlora's ClientApp, push the reply and the task's status. torch and flwr
are imported once; a message costs no process start.

The ClientApp is the installed fedlora's (``fedlora.client.app:app``): a run whose app
names another ClientApp gets an error reply that says so. The Runtime API calls are
Flower's own (``flwr.supernode.runtime.run_clientapp``), pinned by ``flwr>=1.42``;
tests/node/ runs this node against a real SuperLink.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import os
import sys
import threading
import tomllib
import zipfile
from collections.abc import Callable, Sequence
from logging import ERROR, INFO, WARN

#: how often the node asks its Runtime API for a new task; the SuperNode itself polls the
#: SuperLink every 3 s (Flower 1.42), so a shorter wait here buys little and costs CPU
TASK_POLL_SECONDS = 0.25
#: the ClientApp this node runs, as a FAB's pyproject names it
FEDLORA_CLIENT_APP = "fedlora.client.app:app"


def main(argv: Sequence[str] | None = None) -> None:
    """Start the SuperNode (Flower's ``flower-supernode`` arguments) with fedlora's
    ClientApp in this process."""
    # No network at run time beyond the SuperLink: Flower's SuperNode would ask PyPI for a
    # newer flwr and send telemetry unless told not to (a user's own setting wins).
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    from fedlora.errors import FedloraError
    from fedlora.extras import require

    try:
        for module in ("flwr", "torch"):
            require(module)
    except FedloraError as error:
        _fail(str(error))
    from flwr.supercore import log

    runtime, argv = _runtime_api(list(sys.argv[1:] if argv is None else argv))
    # torch._dynamo stays out of this process (client/light_torch.py): about 75 MiB
    from fedlora.client.light_torch import skip_dynamo_import

    skip_dynamo_import()
    from fedlora.client.app import app
    from flwr.supernode.cli.flower_supernode import flower_supernode

    tasks = TaskLoop(runtime, app)
    threading.Thread(target=tasks.run, name="fedlora-clientapp", daemon=True).start()
    log(INFO, "fedlora-node: the ClientApp runs in this process (Runtime API %s)", runtime.address)
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


class RuntimeApi:
    """Where this node's Runtime API serves, and how to reach it (from the SuperNode's
    own arguments)."""

    def __init__(self, address: str, root_certificates: bytes | None, auth_secret: bytes | None):
        self.address = address
        self.root_certificates = root_certificates
        self.auth_secret = auth_secret

    def client(self, interceptors: list) -> object:
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.root_certificates is None,
            root_certificates=self.root_certificates,
            interceptors=interceptors,
            retry_invoker=make_simple_http_retry_invoker(),
        )


def _runtime_api(argv: list[str]) -> tuple[RuntimeApi, list[str]]:
    """Parse the SuperNode's arguments as ``flower-supernode`` does and check the node
    config early; returns the Runtime API and the arguments with ``--isolation process``
    (the only mode this node runs in)."""
    from pathlib import Path

    from flwr.common.config import parse_config_args
    from flwr.supercore.auth import load_superexec_auth_secret
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    args = _parse_args_run_supernode().parse_args(argv)
    if "--isolation" in argv and args.isolation != "process":
        _fail(f"fedlora-node runs the ClientApp itself (--isolation process); drop --isolation {args.isolation}")
    if "--isolation" not in argv:
        argv = [*argv, "--isolation", "process"]
    node_config = parse_config_args([args.node_config] if args.node_config else None)
    partition = node_config.get("partition-id")
    if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
        _fail(
            f"--node-config must give this node's partition as a whole number ≥ 0, e.g. --node-config 'partition-id=0'; "
            f"got partition-id={partition!r}"
        )
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else ("::1" if args.host == "::" else args.host)
    host = f"[{host}]" if ":" in host else host
    root = Path(args.ssl_ca_certfile).expanduser().read_bytes() if args.ssl_certfile else None
    secret = load_superexec_auth_secret(secret_file=args.superexec_auth_secret_file) if args.superexec_auth_secret_file else None
    return RuntimeApi(f"{host}:{args.port}", root, secret), argv


def _fail(message: str) -> None:
    print(f"fedlora-node: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class TaskLoop:
    """What ``flower-superexec`` and one ``flwr-clientapp`` per task do, in one thread."""

    def __init__(self, runtime: RuntimeApi, app: Callable, poll_seconds: float = TASK_POLL_SECONDS):
        self.runtime = runtime
        self.app = app
        self.poll_seconds = poll_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore import log
        from flwr.supercore.constant import TaskType
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor, SuperExecAuthHttpInterceptor

        interceptors: list = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
        if self.runtime.auth_secret:
            interceptors.append(
                SuperExecAuthHttpInterceptor(master_secret=self.runtime.auth_secret, protected_methods={"/flwr.proto.Runtime/AcquireTask"})
            )
        client = self.runtime.client(interceptors)
        while not self.stopped.is_set():
            try:
                response = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
            except Exception as error:  # the Runtime API is not up yet, or restarting
                log(WARN, "fedlora-node: cannot reach the Runtime API at %s (%s); retrying", self.runtime.address, error)
                self.stopped.wait(5 * self.poll_seconds)
                continue
            if response.HasField("task") and response.token:
                try:
                    self.run_task(response.token)
                except Exception as error:  # this thread is the node's only worker: it goes on
                    log(ERROR, "fedlora-node: a task failed outside the ClientApp", exc_info=error)
                release_freed_memory()
            else:
                self.stopped.wait(self.poll_seconds)

    def run_task(self, token: str) -> None:
        """One task, as ``flwr-clientapp --token`` runs it, without exiting afterwards."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore import log
        from flwr.supercore.heartbeat import HeartbeatSender
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
        from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

        client = self.runtime.client([RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"), RuntimeTokenHttpInterceptor(token)])
        heartbeat = HeartbeatSender(_heartbeat(client))
        heartbeat.start()
        message = context = reply = None
        status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
        try:
            message, context, run, fab = pull_task_input(client)
            _check_client_app(fab.content, run.fab_id)
            reply = self.app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
        except Exception as error:  # the reply carries it to the server, as flwr-clientapp's does
            log(ERROR, "ClientApp raised an exception", exc_info=error)
            details = str(type(error)) + ":<'" + str(error) + "'>"
            if message is not None:
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            except Exception as error:
                log(ERROR, "fedlora-node: failed to push the reply", exc_info=error)
                status, details = SubStatus.FAILED, f"failed to push the reply: {error}"
            push_task_output(client=client, context=context, sub_status=status, details=details)
            heartbeat.stop()
            client.close()


def _heartbeat(client) -> Callable[[], bool]:
    """Flower's task heartbeat, except that a task the SuperNode dropped is logged: Flower's
    stops its process with SIGINT, which here would stop the whole node."""
    import httpx
    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest
    from flwr.supercore import log

    def beat() -> bool:
        try:
            response = client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
        except httpx.HTTPError:
            return False
        if not response.success:
            log(WARN, "fedlora-node: the SuperNode no longer tracks the running task")
        return True

    return beat


def _check_client_app(fab_content: bytes, fab_id: str) -> None:
    """The run's app must be fedlora's: this node runs no other code than its own."""
    from fedlora.errors import FedloraError

    with zipfile.ZipFile(io.BytesIO(fab_content)) as fab:
        pyproject = tomllib.loads(fab.read("pyproject.toml").decode())
    named = pyproject.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {}).get("clientapp")
    if named != FEDLORA_CLIENT_APP:
        raise FedloraError(
            f"this node runs fedlora's ClientApp ({FEDLORA_CLIENT_APP}) only, and run app {fab_id!r} asks for {named!r}; "
            "run that app on a flower-supernode node"
        )


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``)."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def release_freed_memory() -> None:
    """Give the heap's free pages back to the OS between tasks (glibc's malloc_trim), so
    what a round allocated does not stay counted against the device while it idles."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


if __name__ == "__main__":
    main()
