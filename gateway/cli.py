"""The ``plutos`` command: serve, migrate, and manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import faulthandler
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError

from core.errors import PlutosError
from gateway.resources import raise_open_files_limit
from server.config import ConfigError, Settings, load_settings, sized_for_workers
from server.keys import (
    ADMIN_SCOPES,
    DEFAULT_SCOPES,
    SCOPES,
    CreatedKey,
    create_key,
    key_status,
    list_keys,
    revoke_key,
    rotate_key,
    update_key,
)
from server.response_cache import CACHE_MODES
from server.store.database import create_engine, session_factory
from server.store.migrate import upgrade
from server.store.models import Account, utcnow

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS = {"s": 1, "": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_MAX_DURATION = timedelta(days=36500)  # 100 years: later expiries are "never" (leave the flag out)


def parse_duration(text: str) -> timedelta:
    """``90``, ``30m``, ``24h``, ``7d``, ``2w`` (``0`` allowed: a rotation's grace), at most 100 years.

    Raises ``argparse.ArgumentTypeError`` (argparse prints one line, exit 2) otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 30m, 24h, 7d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"{text!r}: too long (at most 36500d; leave it out for no expiry)")
    return timedelta(seconds=seconds)


def parse_lifetime(text: str) -> timedelta:
    """A key's ``--expires-in``: like :func:`parse_duration`, and positive (a key born expired is a mistake)."""
    duration = parse_duration(text)
    if duration <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive (leave --expires-in out for no expiry)")
    return duration


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _settings(args: argparse.Namespace) -> Settings:
    """The configuration with the command line's flags applied, validated as one (ports 0-65535, each
    listener on its own port): a bad flag is a :class:`ConfigError` like a bad file or variable."""
    overrides: dict[str, Any] = {}
    for name in ("http_port", "grpc_port", "http_host", "grpc_host"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    host = getattr(args, "host", None)
    if host:
        overrides.setdefault("http_host", host)
        overrides.setdefault("grpc_host", host)
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _key_json(key: CreatedKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "key": key.secret,
        "prefix": key.prefix,
        "accountId": key.account_id,
        "plan": key.plan,
        "name": key.name,
        "scopes": list(DEFAULT_SCOPES) if key.scopes is None else key.scopes,  # what the key holds
        "models": key.models,  # null: every model in the catalogue
        "expiresAt": _timestamp(key.expires_at),
        "cacheDefault": key.row.cache_default if key.row is not None else None,
    }


def _timestamp(moment: Any) -> str | None:
    """RFC 3339 in whole seconds, as the API prints timestamps (``2026-11-30T21:58:18Z``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


async def _with_store(settings: Settings, work: Any) -> Any:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        return await work(session_factory(engine))
    finally:
        await engine.dispose()


def cmd_keys_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.account is not None and args.plan is not None:
        print(
            "--plan and --account cannot be combined: a key added to an existing account has that account's plan",
            file=sys.stderr,
        )
        return 2
    if args.plan is None:
        args.plan = "enterprise" if args.admin else "free"
    if args.plan not in settings.plans:
        print(f"unknown plan {args.plan!r}; plans: {', '.join(settings.plans)}", file=sys.stderr)
        return 2
    scopes = _csv(args.scopes) if args.scopes else None
    if scopes is not None and (unknown := set(scopes) - set(SCOPES)):
        print(f"unknown scopes {sorted(unknown)}; scopes: {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    if scopes is not None and "admin" in scopes:
        print("the admin scope is granted with --admin (not --scopes)", file=sys.stderr)
        return 2
    if args.admin:
        if scopes is not None:
            print("--admin keys hold every scope; drop --scopes", file=sys.stderr)
            return 2
        scopes = list(ADMIN_SCOPES)
    limits = {
        name: value
        for name in ("requests_per_minute", "requests_per_hour", "requests_per_day", "concurrent_requests")
        if (value := getattr(args, name)) is not None
    }
    expires_at = utcnow() + args.expires_in if args.expires_in is not None else None
    name = args.name or ("operator" if args.admin else "")
    if args.account is not None:
        exists = asyncio.run(_with_store(settings, lambda sessions: _account_exists(sessions, args.account)))
        if not exists:
            print(f"no account {args.account} (plutos keys list shows each key's account)", file=sys.stderr)
            return 1
    try:
        key: CreatedKey = asyncio.run(
            _with_store(
                settings,
                lambda sessions: create_key(
                    sessions,
                    plan=args.plan,
                    name=name,
                    account_id=args.account,
                    scopes=scopes,
                    models=_csv(args.models) if args.models else None,
                    expires_at=expires_at,
                    limits=limits,
                    cache_default=args.cache_default,
                ),
            )
        )
    except PlutosError as err:
        print(err.message, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_key_json(key)))
    else:
        print(f"Created key {key.id} (plan {key.plan}, account {key.account_id}). Shown once:\n\n    {key.secret}\n")
    return 0


async def _account_exists(sessions: Any, account_id: str) -> bool:
    async with sessions() as session:
        return await session.get(Account, account_id) is not None


def cmd_keys_list(args: argparse.Namespace) -> int:
    async def work(sessions: Any) -> list[dict[str, Any]]:
        async with sessions() as session:
            rows = await list_keys(session)
        now = utcnow()
        return [
            {
                "id": k.id,
                "prefix": k.prefix,
                "name": k.name,
                "accountId": a.id,
                "plan": a.plan,
                "scopes": list(DEFAULT_SCOPES) if k.scopes is None else k.scopes,
                "models": k.models,
                "createdAt": _timestamp(k.created_at),
                "expiresAt": _timestamp(k.expires_at),
                "revokedAt": _timestamp(k.revoked_at),
                "lastUsedAt": _timestamp(k.last_used_at),
                "cacheDefault": k.cache_default,
                "status": key_status(k, now),
            }
            for k, a in rows
        ]

    keys = asyncio.run(_with_store(_settings(args), work))
    if args.json:
        print(json.dumps(keys))
        return 0
    print(f"{'ID':24} {'PREFIX':12} {'PLAN':10} {'STATUS':9} {'EXPIRES':20} NAME")
    for k in keys:
        print(f"{k['id']:24} {k['prefix']:12} {k['plan']:10} {k['status']:9} {k['expiresAt'] or '-':20} {k['name']}")
    return 0


def cmd_keys_update(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.cache_default is not None:
        changes["cache_default"] = None if args.cache_default == "none" else args.cache_default
    if args.name is not None:
        changes["name"] = args.name
    if not changes:
        print("nothing to change: give --cache-default or --name", file=sys.stderr)
        return 2
    try:
        key = asyncio.run(_with_store(_settings(args), lambda sessions: update_key(sessions, args.id, changes)))
    except PlutosError as err:
        print(f"no key {args.id}: {err.message}" if err.code == "not_found" else err.message, file=sys.stderr)
        return 1
    print(f"updated {key.id} (name {key.name!r}, cache default {key.cache_default or 'none'})")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_with_store(_settings(args), lambda sessions: revoke_key(sessions, args.id)))
    except PlutosError as err:
        print(f"no key {args.id}: {err.message}" if err.code == "not_found" else err.message, file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    try:
        rotation = asyncio.run(_with_store(_settings(args), lambda sessions: rotate_key(sessions, args.id, args.grace)))
    except PlutosError as err:
        print(err.message, file=sys.stderr)
        return 1
    key = rotation.new
    if args.json:
        print(json.dumps({**_key_json(key), "replaces": args.id}))
    else:
        expiry = rotation.old.expires_at.isoformat() if rotation.old.expires_at else "-"
        print(
            f"New key {key.id} replaces {args.id}; the old key works until {expiry}. Shown once:\n\n    {key.secret}\n"
        )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    asyncio.run(_with_store(_settings(args), lambda sessions: asyncio.sleep(0)))
    print("database is up to date")
    return 0


async def _dev_keys_if_empty(settings: Settings) -> tuple[CreatedKey, CreatedKey] | None:
    """On an empty store: a development key and an operator (admin) key, in accounts of their own."""

    async def work(sessions: Any) -> tuple[CreatedKey, CreatedKey] | None:
        async with sessions() as session:
            if await list_keys(session):
                return None
        # The account owner's key: every default scope plus `keys`, so the dashboard's Keys page and the
        # self-service key API work with the key `make run` prints.
        dev = await create_key(sessions, plan="enterprise", name="development", scopes=[*DEFAULT_SCOPES, "keys"])
        admin = await create_key(sessions, plan="enterprise", name="operator", scopes=list(ADMIN_SCOPES))
        return dev, admin

    result: tuple[CreatedKey, CreatedKey] | None = await _with_store(settings, work)
    return result


def _run_worker(settings: Settings, ready: Any = None) -> None:
    from gateway.app import catch_stop_signals_early, serve_forever

    catch_stop_signals_early()
    if ready is not None:
        ready.set()  # the parent may forward SIGTERM from now on
    _use_uvloop()
    asyncio.run(serve_forever(settings, migrate=False))


def _use_uvloop() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr (for a server that seems stuck).
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass


@dataclasses.dataclass
class _Worker:
    proc: Any  # multiprocessing.Process
    ready: Any  # multiprocessing.Event: set once the worker can take SIGTERM / SIGINT
    sent: int = 0  # signals forwarded to it so far
    replaced: bool = False  # exited unasked and a new worker took its place


# A worker that keeps dying (say, on start) is not restarted forever: at most this many
# replacements within _RESTART_WINDOW seconds, then the rest keep serving and the exit code says so.
_MAX_RESTARTS = 5
_RESTART_WINDOW = 60.0


def _run_workers(settings: Settings, workers: int) -> int:
    """``workers`` processes sharing the ports. Metrics: prometheus-client's multiprocess mode in a
    fresh directory (unless PROMETHEUS_MULTIPROC_DIR names one), so any worker's scrape shows all.
    A worker that exits before any stop signal (crashed, ``kill -9``) is replaced by a new one (one
    line on stdout says so). SIGTERM / SIGINT go to every worker (to one still starting, once it can
    take them: it drains when started); exits 0 when every worker that was not replaced did."""
    from prometheus_client import multiprocess

    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="plutos-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    ctx = multiprocessing.get_context("spawn")
    received: list[int] = []

    def note(signum: int, _: Any) -> None:
        received.append(signum)

    def start() -> _Worker:
        ready = ctx.Event()
        proc = ctx.Process(target=_run_worker, args=(settings, ready), daemon=False)
        proc.start()
        return _Worker(proc, ready, sent=len(received))

    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGINT, note)
    pool = [start() for _ in range(workers)]
    print(f"[plutos] started {workers} worker processes sharing the ports (SO_REUSEPORT)", flush=True)
    restarts: list[float] = []
    while True:
        for w in list(pool):
            proc = w.proc
            if w.sent < len(received) and w.ready.is_set() and proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, received[w.sent])
                w.sent += 1
            elif not received and not w.replaced and not proc.is_alive():
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < _RESTART_WINDOW]
                if len(restarts) >= _MAX_RESTARTS:
                    continue  # it keeps dying: leave it exited (its code is counted at the end)
                restarts.append(now)
                w.replaced = True
                print(f"[plutos] worker {proc.pid} exited with {proc.exitcode}; starting a new one", flush=True)
                if proc.pid is not None:
                    multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                pool.append(start())
        if not any(w.proc.is_alive() for w in pool):
            break
        time.sleep(0.1)
    codes = [w.proc.exitcode for w in pool if not w.replaced]
    for w in pool:
        if w.proc.pid is not None and not w.replaced:
            multiprocess.mark_process_dead(w.proc.pid)  # type: ignore[no-untyped-call]
    if own_dir is not None:
        shutil.rmtree(own_dir, ignore_errors=True)
    if any(code != 0 for code in codes):
        print(f"[plutos] workers exited with {codes}", flush=True)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.app import (
        AddressUnavailable,
        PortUnavailable,
        catch_stop_signals_early,
        check_ports_free,
        serve_forever,
    )

    settings = _settings(args)
    try:
        check_ports_free(settings)
    except PortUnavailable as err:
        print(f"[plutos] {err}", file=sys.stderr, flush=True)
        return 2 if isinstance(err, AddressUnavailable) else 1
    if args.dev_key:
        created = asyncio.run(_dev_keys_if_empty(settings))
        if created is not None:
            dev, admin = created
            print(
                "\n[plutos] Created a development API key (plan enterprise). It is shown only this once:\n\n"
                f"    {dev.secret}\n\n"
                f"  curl -s http://localhost:{settings.http_port}/v1/models"
                f" -H 'Authorization: Bearer {dev.secret}'\n\n"
                "[plutos] Created an admin API key (scope admin: accounts, any account's keys, the audit trail)."
                " Shown only this once:\n\n"
                f"    {admin.secret}\n\n"
                f"  curl -s http://localhost:{settings.http_port}/v1/admin/accounts"
                f" -H 'Authorization: Bearer {admin.secret}'\n\n"
                f"  Dashboard: http://localhost:{settings.http_port}/dashboard/ (sign in with either key)\n",
                flush=True,
            )
        else:
            print(
                "[plutos] API keys already exist; make a new one with `plutos keys create --plan free`.",
                flush=True,
            )
    else:
        asyncio.run(_with_store(settings, lambda sessions: asyncio.sleep(0)))
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    settings = sized_for_workers(settings, args.workers)
    raised = raise_open_files_limit()
    if raised is not None:
        print(f"[plutos] open files: soft limit raised from {raised[0]} to {raised[1]} (RLIMIT_NOFILE)", flush=True)
    if args.workers > 1:
        if settings.redis_url:
            return _run_workers(settings, args.workers)
        # Limits stay exact across workers: without a configured Redis, the workers share a private
        # one (gateway/private_redis.py); the in-memory limiter would count per process.
        from gateway.private_redis import private_redis

        with private_redis() as url:
            if url is None:
                print(
                    f"[plutos] warning: redis-server is not installed and no redis_url is set: the in-memory "
                    f"limiter counts per process, so each of the {args.workers} workers applies the plan limits "
                    "on its own; install redis-server or set PLUTOS_REDIS_URL to share one limit.",
                    flush=True,
                )
                return _run_workers(settings, args.workers)
            print(
                f"[plutos] the {args.workers} workers share limits, caches and idempotency keys through a private "
                "in-memory Redis (a Unix socket; set PLUTOS_REDIS_URL to use your own)",
                flush=True,
            )
            return _run_workers(dataclasses.replace(settings, redis_url=url), args.workers)
    catch_stop_signals_early()
    _use_uvloop()
    asyncio.run(serve_forever(settings, migrate=False))
    return 0


_CONFIG_HELP = "TOML config file (default: embedded defaults; env PLUTOS_CONFIG)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plutos", description="PlutosAI: AI processing platform")
    parser.add_argument("--config", help=_CONFIG_HELP)
    # --config is accepted before or after the subcommand (`plutos serve --config FILE`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=_CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the gRPC server and the REST bridge")
    serve.add_argument("--http-port", type=int, help="REST port (default 3000; env PLUTOS_HTTP_PORT)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; env PLUTOS_GRPC_PORT)")
    serve.add_argument("--host", help="address to listen on for both (default 127.0.0.1)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the ports (SO_REUSEPORT)")
    serve.add_argument("--dev-key", action="store_true", help="create and print a key if the store has none")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", parents=[common], help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", parents=[common], help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", parents=[common], help="create a key (and a new account unless --account)")
    create.add_argument(
        "--plan", help="plan of the new account: free | pro | enterprise (default free; enterprise with --admin)"
    )
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--account", help="add the key to this existing account id")
    create.add_argument(
        "--scopes",
        help=f"comma-separated subset of: {','.join(s for s in SCOPES if s != 'admin')} (default: all but keys)",
    )
    create.add_argument("--models", help="comma-separated model ids this key may use (default all)")
    create.add_argument("--expires-in", type=parse_lifetime, help="e.g. 30d; default never")
    for name in ("requests-per-minute", "requests-per-hour", "requests-per-day", "concurrent-requests"):
        create.add_argument(f"--{name}", type=int, dest=name.replace("-", "_"), help="lower than the plan's")
    create.add_argument(
        "--admin", action="store_true", help="an operator key: every scope, including admin (default plan enterprise)"
    )
    create.add_argument(
        "--cache-default",
        choices=CACHE_MODES,
        help="options.cache for the key's calls that do not set it (default: none, i.e. bypass)",
    )
    create.add_argument("--json", action="store_true", help="print a JSON object")
    create.set_defaults(func=cmd_keys_create)

    upd = keys.add_parser("update", parents=[common], help="change a key's name or cache default")
    upd.add_argument("id")
    upd.add_argument("--name", help="a new label")
    upd.add_argument(
        "--cache-default",
        choices=[*CACHE_MODES, "none"],
        help="options.cache for the key's calls that do not set it; none: no default (bypass)",
    )
    upd.set_defaults(func=cmd_keys_update)

    lst = keys.add_parser("list", parents=[common], help="list keys (prefixes only; secrets are never stored)")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_keys_list)

    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key now")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_keys_revoke)

    rotate = keys.add_parser(
        "rotate", parents=[common], help="issue a replacement; the old key works until the grace ends"
    )
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=parse_duration, default=timedelta(hours=24), help="default 24h")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_keys_rotate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"plutos: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `plutos keys list | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not fail again, and end quietly with the shell's SIGPIPE status.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    except (OSError, DBAPIError) as exc:
        # The database (or a port) cannot be reached: one line, no traceback.
        reason = getattr(exc, "orig", None) or exc
        print(f"plutos: {type(reason).__name__}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
