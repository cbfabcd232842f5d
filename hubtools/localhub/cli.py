"""``python -m hubtools hub serve | seed | exec``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from hubtools.errors import UsageError
from hubtools.localhub.defaults import DEFAULT_HOST, DEFAULT_PORT, DEV_TOKEN, default_data_dir
from hubtools.localhub.seed import seed
from hubtools.localhub.server import LocalHub

EXEC_EXAMPLE = "python -m hubtools hub exec -- make recipe"


def register(groups: argparse._SubParsersAction) -> None:
    hub = groups.add_parser("hub", help="run and seed the local Hub", description="Run and seed the local Hub.")
    commands = hub.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve a data dir in the foreground, logging requests")
    _server_options(serve, DEFAULT_PORT)
    serve.set_defaults(func=cmd_serve)

    seed_cmd = commands.add_parser("seed", help="publish clinc_oos and all-MiniLM-L6-v2 (idempotent)")
    _data_option(seed_cmd)
    _dataset_option(seed_cmd)
    seed_cmd.set_defaults(func=cmd_seed)

    exec_cmd = commands.add_parser(
        "exec",
        help="seed, serve on a free port, run a command with HF_ENDPOINT/HF_TOKEN set",
        description=f"Seed, start the server in the background, run CMD, stop. Example: {EXEC_EXAMPLE}",
    )
    _server_options(exec_cmd, 0)
    _dataset_option(exec_cmd)
    exec_cmd.add_argument("--no-seed", action="store_true", help="do not seed before running CMD")
    exec_cmd.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run")
    exec_cmd.set_defaults(func=cmd_exec)


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data_dir(),
        help="data dir holding the repos (default: $LOCALHUB_DATA or .hub/ in the project root)",
    )


def _dataset_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset-dir",
        type=Path,
        default=None,
        help="clinc_oos in the Hub's parquet layout (default: data/clinc_oos in the repository)",
    )


def _server_options(parser: argparse.ArgumentParser, port: int) -> None:
    _data_option(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=port, help=f"port, 0 for any free one (default {port})")
    parser.add_argument("--token", default=None, help=f"token writes need (default: $LOCALHUB_TOKEN or {DEV_TOKEN})")


def cmd_serve(args: argparse.Namespace) -> int:
    logging.getLogger("hubtools.localhub").setLevel(logging.INFO)
    hub = LocalHub(args.data, args.host, args.port, args.token)
    token_hint = DEV_TOKEN if hub.token == DEV_TOKEN else "the --token / $LOCALHUB_TOKEN value"
    print(
        f"Local Hub serving {hub.data_dir} at {hub.url}\n"
        f"  export HF_ENDPOINT={hub.url}\n  export HF_TOKEN=<{token_hint}>   # for writes\n"
        "Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    # Set explicitly: a shell without job control starts background commands with SIGINT
    # ignored, and Python then never raises KeyboardInterrupt. SIGTERM stops it the same way.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_serving)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _stop_serving(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_seed(args: argparse.Namespace) -> int:
    for result in seed(args.data, args.dataset_dir):
        state = "new commit" if result.changed else "unchanged"
        print(f"{result.repo_type} {result.repo_id}: {result.commit} ({state})")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise UsageError(f"hub exec needs a command after '--', e.g. {EXEC_EXAMPLE}")
    if not args.no_seed:
        seed(args.data, args.dataset_dir)
    with LocalHub(args.data, args.host, args.port, args.token) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_TELEMETRY": "1"}
        try:
            child = subprocess.Popen(command, env=env)
        except FileNotFoundError:
            raise UsageError(f"Command not found: {command[0]!r}.") from None
        with forwarding(signal.SIGTERM, child):
            try:
                code = child.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the child too: let it finish its own clean-up
                code = child.wait()
    return code if code >= 0 else 128 - code  # killed by signal N -> 128 + N, as shells report it


@contextlib.contextmanager
def forwarding(signum: int, child: subprocess.Popen):
    """While the block runs, pass ``signum`` sent to this process on to ``child`` (``kill PID`` of
    ``hub exec`` stops the recipe run it started, which then stops as after Ctrl-C, instead of
    leaving it running without a Hub); the previous handler comes back afterwards."""
    previous = signal.signal(signum, lambda received, _frame: child.send_signal(received))
    try:
        yield
    finally:
        signal.signal(signum, previous)
