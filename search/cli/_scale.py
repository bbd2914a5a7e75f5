"""The ``storage-proxy`` command: Optuna's gRPC storage proxy in front of one study database.

Hundreds of workers then hold one gRPC channel each instead of database connections, and
the proxy answers their many reads from Optuna's in-process trial cache. Workers reach it
with ``--storage grpc://HOST:PORT``.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import typer

from ._common import StorageOption, err, setup_logging, user_errors

PROXY_THREADS = 10  # Optuna's default; SQLAlchemy's default pool (5 + 10 overflow) covers them


@user_errors
def storage_proxy(
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; 0.0.0.0 for every interface (the proxy has no authentication: "
                       "expose it only to a trusted network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 13000,
) -> None:
    """Serve a study database to workers over gRPC (Optuna's storage proxy); they use --storage grpc://HOST:PORT.

    Runs until Ctrl-C or SIGTERM. Trials run through the proxy send no heartbeats
    (an RDB-storage feature): a trial whose worker died stays RUNNING.
    """
    import optuna

    from .. import StorageError, open_storage, redact, resolve_storage_url
    from ..storage._open import grpc_address

    setup_logging()
    url = resolve_storage_url(storage)
    if grpc_address(url) is not None:
        raise StorageError(f"storage-proxy serves a database, not another proxy ({redact(url)}); give it "
                           f"--storage sqlite:///FILE or postgresql+psycopg://...")
    # Optuna's in-process cache in front of its RDB storage, as Optuna recommends for the proxy.
    backend = optuna.storages.get_storage(open_storage(url, heartbeat=False))
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address, as gRPC wants it in HOST:PORT
    shown = f"grpc://{host}:{port}"
    _check_port_free(host, port)
    # What workers should use: this machine's name when the proxy listens on every interface.
    reach = f"grpc://{socket.gethostname()}:{port}" if host in ("0.0.0.0", "[::]") else shown
    pool = ThreadPoolExecutor(max_workers=PROXY_THREADS, thread_name_prefix="storage-proxy")
    threading.Thread(target=_announce_when_ready, args=(host, port, f"storage proxy for {redact(url)} listening "
                     f"on {shown}; workers: digitune worker NAME --storage {reach}. Ctrl-C stops it."),
                     daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.run_grpc_proxy_server(backend, host=host, port=port, thread_pool=pool)
    except KeyboardInterrupt as exc:
        pool.shutdown(wait=True, cancel_futures=True)  # requests in flight finish; nothing new starts
        err.print(f"storage proxy on {shown} stopped ({exc or 'SIGINT'})", markup=False, highlight=False)
    except RuntimeError as exc:  # grpc cannot bind the address
        pool.shutdown(wait=False, cancel_futures=True)
        err.print(f"error: cannot listen on {host}:{port}: {str(exc).splitlines()[0]} (is the port in use? "
                  f"choose another with --port)", markup=False, highlight=False)
        raise typer.Exit(2) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_port_free(host: str, port: int) -> None:
    """Exit 2 with a message if ``host:port`` is taken.

    gRPC binds with SO_REUSEPORT, so a second proxy on a port in use would start and silently
    share it; a plain socket without that option finds out first.
    """
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        err.print(f"error: cannot listen on {host}:{port}: {exc.strerror}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            hint = "; another program (a proxy already running?) uses it: choose another with --port" \
                if exc.errno == errno.EADDRINUSE else ""
            err.print(f"error: cannot listen on {host}:{port}: {exc.strerror}{hint}", markup=False, highlight=False)
            raise typer.Exit(2) from None


def _announce_when_ready(host: str, port: int, message: str) -> None:
    """Print ``message`` once the proxy answers on ``host:port`` (a client's view of it)."""
    import optuna

    probe_host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        client = optuna.storages.GrpcStorageProxy(host=probe_host, port=port)
    try:
        client.wait_server_ready(timeout=60)
    except ConnectionError:
        return
    finally:
        client.close()
    err.print(message, markup=False, highlight=False)
