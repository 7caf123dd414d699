"""`jupyter-serving serve|tokens|secrets|promote`: the standalone server, its local administration,
and promotion of an endpoint to another workspace.

`serve` runs the serving API alone, on a Jupyter server with none of Jupyter's services. Every trait
of `ServingSettings` and of the built-in backends' settings classes becomes a flag
(`request_timeout_s` -> `--request-timeout-s`, `ray_address` -> `--ray-address`), so flags,
environment variables and config files name the same settings. The admin token comes from
$JUPYTER_SERVING_TOKEN (or Jupyter's $JUPYTER_TOKEN) or a 0600 `--token-file`, never from argv,
which every local user can read with `ps`. `tokens` and `secrets` edit the state dir directly.
"""

from __future__ import annotations

import argparse
import getpass
import os
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from traitlets import Bool, List, TraitType

from jupyter_serving.errors import ServingError
from jupyter_serving.files import PRIVATE_UMASK
from jupyter_serving.launch import TOKEN_ENV
from jupyter_serving.settings import EnvConfigurable, ServingSettings, env_name, settings_classes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-serving", description="Databricks-style Model Serving, locally."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the serving API as a standalone server")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    serve.add_argument(
        "--token-file",
        default=None,
        help=f"file (mode 0600) holding the admin token; default ${TOKEN_ENV}, $JUPYTER_TOKEN or random",
    )
    serve.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: see _admin_token
    serve.add_argument("--base-url", default="/", help="URL prefix of every route (default /)")
    serve.add_argument("--info-file", default="", help="write {url, token, pid} here once listening")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    for name, (_, trait) in _setting_traits().items():
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
    _admin_parsers(sub)
    return parser


def _admin_parsers(sub: Any) -> None:
    state = {"default": None, "help": "state dir of the server (default: the server's default)"}
    tokens = sub.add_parser("tokens", help="service-principal tokens for the serving API")
    tsub = tokens.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a token (and the principal if new); prints it once")
    create.add_argument("--principal", required=True, help="service principal display name or application id")
    create.add_argument("--comment", default=None)
    create.add_argument("--lifetime-seconds", type=int, default=None)
    create.add_argument("--state-dir", **state)
    listing = tsub.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--state-dir", **state)
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.add_argument("--state-dir", **state)
    _grants_parser(sub, state)
    secrets = sub.add_parser(
        "secrets", help="secrets referenced as {{secrets/scope/key}} in environment_vars"
    )
    ssub = secrets.add_subparsers(dest="action", required=True)
    put = ssub.add_parser("put", help="store a secret; the value is read from stdin (never argv)")
    put.add_argument("scope")
    put.add_argument("key")
    put.add_argument("--state-dir", **state)
    slist = ssub.add_parser("list", help="list scope/key names (never values)")
    slist.add_argument("--state-dir", **state)
    delete = ssub.add_parser("delete", help="delete a secret")
    delete.add_argument("scope")
    delete.add_argument("key")
    delete.add_argument("--state-dir", **state)
    _promote_parser(sub)


GRANTS_EPILOG = """\
Securable types: catalog (main), schema (main.default), function (a registered model,
main.default.iris) and table (main.default.features). Privileges: USE_CATALOG, USE_SCHEMA, EXECUTE,
SELECT, ALL_PRIVILEGES, inherited downward. A principal is a service principal's display name or
application id, or 'account users' (every service principal).

  jupyter-serving grants grant catalog main --principal ci-bot ALL_PRIVILEGES
  jupyter-serving grants show function main.default.iris --effective
"""


def _grants_parser(sub: Any, state: dict[str, Any]) -> None:
    grants = sub.add_parser(
        "grants",
        help="Unity Catalog grants on the local catalog (what endpoint creators need to serve UC models)",
        epilog=GRANTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gsub = grants.add_subparsers(dest="action", required=True)
    show = gsub.add_parser("show", help="the grants on a securable (--effective: inherited ones too)")
    for action in (
        show,
        gsub.add_parser("grant", help="grant privileges"),
        gsub.add_parser("revoke", help="revoke privileges"),
    ):
        action.add_argument("securable_type", help="catalog, schema, function (a model) or table")
        action.add_argument("full_name", help="e.g. main, main.default, main.default.iris")
        action.add_argument("--state-dir", **state)
        if action is show:
            action.add_argument("--principal", default=None, help="only this principal's grants")
            action.add_argument("--effective", action="store_true", help="include inherited grants")
        else:
            action.add_argument(
                "--principal", required=True, help="display name, application id or 'account users'"
            )
            action.add_argument("privileges", nargs="+", help="e.g. USE_CATALOG USE_SCHEMA EXECUTE")


PROMOTE_EPILOG = """\
The target is written only through databricks-sdk calls, so URL may be a Databricks workspace or
another jupyter-serving server. Its token comes from --token-file, $DATABRICKS_TOKEN or --profile
(~/.databrickscfg), never from the command line. The source is --from, else $JUPYTER_SERVING_URL,
else http://127.0.0.1:8765/, with the token from --from-token-file or $JUPYTER_SERVING_TOKEN.

  jupyter-serving promote my-ep --to https://<workspace>.cloud.databricks.com --copy-models --wait
"""


def _promote_parser(sub: Any) -> None:
    promote = sub.add_parser(
        "promote",
        help="create or update the same endpoint on another workspace (databricks-sdk)",
        description="Create the endpoint on the target workspace, or update its config, tags and AI "
        "gateway there, so it serves what ENDPOINT serves here.",
        epilog=PROMOTE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_argument("endpoint", help="name of the endpoint on the source server")
    promote.add_argument("--to", metavar="URL", default=None, help="URL of the target workspace")
    promote.add_argument("--profile", default=None, help="~/.databrickscfg profile of the target")
    promote.add_argument("--token-file", default=None, help="file (mode 0600) holding the target's token")
    promote.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: see _promote
    promote.add_argument(
        "--from", dest="source", metavar="URL", default=None, help="URL of the source server"
    )
    promote.add_argument("--from-token-file", default=None, help="file (mode 0600): the source's token")
    promote.add_argument("--from-token", default=None, help=argparse.SUPPRESS)  # refused too
    promote.add_argument(
        "--copy-models",
        action="store_true",
        help="register the served model versions in the target's registry first (same names)",
    )
    promote.add_argument(
        "--target-registry-uri",
        default=None,
        help="MLflow registry of the target (default: databricks-uc for a Databricks workspace, "
        "else the one a jupyter-serving target reports)",
    )
    promote.add_argument("--target-tracking-uri", default=None, help=argparse.SUPPRESS)
    promote.add_argument(
        "--source-registry-uri",
        default=None,
        help="MLflow registry of the source (default: the one the source server reports)",
    )
    promote.add_argument("--wait", action="store_true", help="wait until the target endpoint is updated")
    promote.add_argument("--timeout", type=float, default=1200.0, help="seconds --wait waits (default 1200)")


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
    token = _admin_token(args)
    if token is not None:  # in-process: this argv is never a process's command line
        argv.append(f"--IdentityProvider.token={token}")
    for name, (cls, trait) in _setting_traits().items():
        value = getattr(args, name)
        if value is not None and not isinstance(trait, List):
            argv.append(f"--{cls.__name__}.{name}={value}")
    return argv


def _setting_traits() -> dict[str, tuple[type[EnvConfigurable], TraitType]]:
    """Every env setting of the server and of the built-in backends, by name (names are unique
    across the classes, so `--ray-address` needs no class prefix), with the class that owns it."""
    return {
        name: (cls, trait) for cls in settings_classes() for name, trait in cls.class_traits(env=True).items()
    }


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """List settings travel as their JUPYTER_SERVING_* variable: ServerApp parses the command line
    before it knows ServingSettings, and a deferred single value of a List(Int) never gets split."""
    lists = [n for n, (_, t) in _setting_traits().items() if isinstance(t, List)]
    return {env_name(n): str(getattr(args, n)) for n in lists if getattr(args, n) is not None}


def _admin_token(args: argparse.Namespace) -> str | None:
    """The admin token from a 0600 file or the environment; removed from the environment so that
    workers (which run model code) never inherit it."""
    if args.token is not None:
        raise SystemExit(
            "jupyter-serving: --token is not accepted: every local user can read a command line (ps). "
            f"Set ${TOKEN_ENV} or pass --token-file (a file of mode 0600)."
        )
    if args.token_file:
        return read_token_file(Path(args.token_file))
    env_token = os.environ.pop(TOKEN_ENV, None)
    jupyter_token = os.environ.pop("JUPYTER_TOKEN", None)
    return env_token or jupyter_token or None


def read_token_file(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SystemExit(f"jupyter-serving: {path} is readable by others (mode {mode:o}); chmod 600 it.")
    token = path.read_text().strip()
    if not token:
        raise SystemExit(f"jupyter-serving: {path} is empty.")
    return token


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from jupyter_serving.app import StandaloneServingApp

        os.umask(PRIVATE_UMASK)  # everything the server writes is its owner's alone
        server_args = server_argv(args)
        os.environ.update(server_env(args))
        StandaloneServingApp.launch_instance(server_args)
    elif args.command == "tokens":
        _tokens(args)
    elif args.command == "grants":
        _grants(args)
    elif args.command == "secrets":
        _secrets(args)
    elif args.command == "promote":
        _promote(args)


def _state_path(args: argparse.Namespace) -> Path:
    settings = ServingSettings(**({"state_dir": args.state_dir} if args.state_dir else {}))
    return settings.state_path


def _tokens(args: argparse.Namespace) -> None:
    from jupyter_serving.identity.principals import IdentityStore, ResourceDoesNotExist

    store = IdentityStore(_state_path(args) / "identity.sqlite")
    try:
        if args.action == "create":
            try:
                sp = store.principal(args.principal)
            except ResourceDoesNotExist:
                sp = store.create_principal(args.principal)
                print(f"created service principal {sp.display_name} ({sp.application_id})", file=sys.stderr)
            token, info = store.create_token(sp.application_id, args.comment, args.lifetime_seconds)
            print(f"token id {info.token_id}, expires {_iso(info.expiry_time)}", file=sys.stderr)
            print(token)  # the only time it is shown
        elif args.action == "list":
            names = store.names()
            for t in store.tokens():
                who = "admin" if t.principal == "owner" else names.get(t.principal, t.principal)
                print(f"{t.token_id}\t{who}\texpires {_iso(t.expiry_time)}\t{t.comment}")
        else:
            store.revoke(args.token_id)
            print(f"revoked {args.token_id}", file=sys.stderr)
    except ServingError as exc:
        raise SystemExit(f"jupyter-serving: {exc.message}") from None
    finally:
        store.close()


def _grants(args: argparse.Namespace) -> None:
    """Reads and writes the server's identity store directly, as `tokens` does: a running server
    sees the change on its next check."""
    from jupyter_serving.identity.grants import UnityCatalogGrants, securable
    from jupyter_serving.identity.principals import IdentityStore

    settings = ServingSettings(**({"state_dir": args.state_dir} if args.state_dir else {}))
    store = IdentityStore(settings.state_path / "identity.sqlite")
    grants = UnityCatalogGrants(store, settings.owner_name)
    try:
        target = securable(args.securable_type, args.full_name)
        if args.action == "show":
            read = grants.effective if args.effective else grants.assignments
            _print_grants(read(target, args.principal), store.names())
        else:
            field = "add" if args.action == "grant" else "remove"
            change = {"principal": args.principal, field: args.privileges}
            _print_grants(grants.update(target, {"changes": [change]}), store.names())
    except ServingError as exc:
        raise SystemExit(f"jupyter-serving: {exc.message}") from None
    finally:
        store.close()


def _print_grants(listing: dict[str, Any], names: dict[str, str]) -> None:
    for assignment in listing["privilege_assignments"]:
        who = names.get(assignment["principal"], assignment["principal"])
        for privilege in assignment["privileges"]:
            if isinstance(privilege, dict):
                source = privilege.get("inherited_from_name")
                line = privilege["privilege"] + (f" (inherited from {source})" if source else "")
            else:
                line = privilege
            print(f"{who}\t{line}")


def _secrets(args: argparse.Namespace) -> None:
    from jupyter_serving.identity.secrets import SecretStore

    store = SecretStore(_state_path(args))
    try:
        if args.action == "put":
            prompt = f"value of {args.scope}/{args.key}: "
            value = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.read().rstrip("\n")
            store.put(args.scope, args.key, value)
        elif args.action == "list":
            for scope, key in store.names():
                print(f"{scope}/{key}")
        else:
            store.delete(args.scope, args.key)
    except ServingError as exc:
        raise SystemExit(f"jupyter-serving: {exc.message}") from None


def _promote(args: argparse.Namespace) -> None:
    """Every failure is one line on stderr and exit status 1: the target's or the source's own
    `CODE: message`, never a traceback."""
    if args.token is not None or args.from_token is not None:
        raise SystemExit(
            "jupyter-serving: tokens are not accepted on the command line (every local user can read it "
            "with ps): set $DATABRICKS_TOKEN / $JUPYTER_SERVING_TOKEN, or pass --token-file / "
            "--from-token-file (mode 0600), or --profile."
        )
    from jupyter_serving.notebook.client import Client
    from jupyter_serving.notebook.discovery import TOKEN_ENV as SOURCE_TOKEN_ENV
    from jupyter_serving.notebook.discovery import URL_ENV
    from jupyter_serving.promotion import PromotionError, PromotionOptions, TargetAuth, promote

    if not args.to and not args.profile:
        raise SystemExit("jupyter-serving: say where to promote to: --to URL (or --profile NAME).")
    url = args.source or os.environ.get(URL_ENV) or "http://127.0.0.1:8765/"
    try:
        source_token = (
            read_token_file(Path(args.from_token_file))
            if args.from_token_file
            else os.environ.get(SOURCE_TOKEN_ENV)
        )
        token = read_token_file(Path(args.token_file)) if args.token_file else None
    except OSError as exc:
        raise SystemExit(f"jupyter-serving: cannot read the token file: {exc}") from None
    options = PromotionOptions(
        copy_models=args.copy_models,
        wait=args.wait,
        timeout_s=args.timeout,
        source_registry_uri=args.source_registry_uri,
        target_registry_uri=args.target_registry_uri,
        target_tracking_uri=args.target_tracking_uri,
    )

    def report(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        result = promote(
            Client(url, source_token),
            args.endpoint,
            TargetAuth(args.to, token, args.profile),
            options,
            report,
        )
    except PromotionError as exc:
        raise SystemExit(f"jupyter-serving: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(
            "jupyter-serving: interrupted; an update already sent goes on on the target."
        ) from None
    print(result.summary())


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


if __name__ == "__main__":
    main(sys.argv[1:])
