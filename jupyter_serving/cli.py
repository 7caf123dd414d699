"""`jupyter-serving serve`: the serving API without Jupyter's UI, on a stock Jupyter server.

Every trait of `ServingSettings` becomes a flag (`request_timeout_s` -> `--request-timeout-s`),
so flags, environment variables and config files name the same settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from traitlets import Bool, List

from jupyter_serving.settings import ServingSettings, env_name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-serving", description="Databricks-style Model Serving, locally."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the serving API as a standalone server")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    serve.add_argument(
        "--token", default=None, help="token clients must send (default: $JUPYTER_TOKEN or random)"
    )
    serve.add_argument("--base-url", default="/", help="URL prefix of every route (default /)")
    serve.add_argument("--info-file", default="", help="write {url, token, pid} here once listening")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    for name, trait in ServingSettings.class_traits(env=True).items():
        help_text = f"{trait.help} (env {env_name(name)})".replace("%", "%%")
        if isinstance(trait, Bool):
            serve.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            serve.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=help_text)
    return parser


def server_argv(args: argparse.Namespace) -> list[str]:
    """Translate our flags into the traitlets command line of the Jupyter server we launch."""
    argv = [
        f"--ServerApp.ip={args.host}",
        f"--ServerApp.port={args.port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={args.base_url}",
        "--ServerApp.open_browser=False",
        # An API-only server: nothing here serves pages a browser could be tricked into using.
        "--ServerApp.allow_root=True",
        f"--ServerApp.log_level={args.log_level}",
        # Standalone, the extension is the server: a failure to load it must stop the server.
        "--ServerApp.reraise_server_extension_failures=True",
        f"--ServingApp.info_file={args.info_file}",
        "--ServingApp.standalone=True",
    ]
    if args.token is not None:
        argv.append(f"--IdentityProvider.token={args.token}")
    for name, trait in ServingSettings.class_traits(env=True).items():
        value = getattr(args, name)
        if value is not None and not isinstance(trait, List):
            argv.append(f"--ServingSettings.{name}={value}")
    return argv


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """List settings travel as their JUPYTER_SERVING_* variable: ServerApp parses the command line
    before it knows ServingSettings, and a deferred single value of a List(Int) never gets split."""
    lists = [n for n, t in ServingSettings.class_traits(env=True).items() if isinstance(t, List)]
    return {env_name(n): str(getattr(args, n)) for n in lists if getattr(args, n) is not None}


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from jupyter_serving.app import ServingApp

        os.environ.update(server_env(args))
        ServingApp.launch_instance(server_argv(args))


if __name__ == "__main__":
    main(sys.argv[1:])
