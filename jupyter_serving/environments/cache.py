"""Per-model Python environments: chosen per served entity, built with uv, cached by content.

An environment is keyed by the interpreter's version and the model's normalised requirements (plus
what the worker imports), and lives at ``<state>/envs/<key>``. Builds are serialised per key by a
file lock, so concurrent deploys, in this server or another process (a notebook's `validate`),
build it once. A build goes into a temporary folder that is renamed into place only once it is
complete, so a build killed half-way is never used. Whoever uses an environment holds a shared lock
on its lock file, which is how eviction beyond the size cap knows what is unused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from jupyter_serving.environments import requirements as reqs

log = logging.getLogger("jupyter_serving")

AUTO, UV, LOCAL = "auto", "uv", "local"
MANAGERS = (AUTO, UV, LOCAL)
ENV_MANAGER_VAR = "JUPYTER_SERVING_ENV_MANAGER"
MARKER = "jupyter-serving-env.json"
RECIPE = 1  # bump when the way environments are built changes: old ones get new keys
LOCK_POLL_S = 0.05


class EnvironmentBuildFailed(Exception):
    """uv could not build the environment; the message is the resolver's own error."""

    log_path: Path | None = None


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str


@dataclass
class Environment:
    """Where a served entity's workers run: an interpreter, and what the GET of the endpoint shows."""

    python: str
    name: str  # "server" or the cache key
    manager: str
    python_version: str
    path: str = ""
    log_path: Path | None = None
    decision: str = ""  # one line: why this environment, built or reused

    def with_decision(self, decision: str) -> Environment:
        return dataclasses.replace(self, decision=decision)

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "env_manager": self.manager, "python_version": self.python_version}
        return {**out, "path": self.path} if self.path else out


@dataclass
class _Lease:
    """A shared lock on an environment held by this process while it may use it."""

    fd: int
    env: Environment


@dataclass
class EnvironmentCache:
    """The environments under one state dir, and the uv that builds them."""

    root: Path
    max_bytes: int
    build_timeout_s: float = 600.0
    uv: str = ""
    list_timeout_s: float = 30.0  # how long `uv python list` may take before it is skipped
    _leases: dict[str, _Lease] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _interpreters: list[Interpreter] | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.uv:
            import uv

            self.uv = uv.find_uv_bin()

    # ----------------------------------------------------------------- choosing
    async def resolve(
        self,
        model_dir: Path | None,
        manager: str,
        waiting: Callable[[str], None] = lambda reason: None,
        overrides: tuple[str, ...] = (),
    ) -> Environment:
        """The environment a model's workers run in, building it first if it is not cached."""
        if manager not in MANAGERS:
            raise EnvironmentBuildFailed(f"{ENV_MANAGER_VAR} must be one of {', '.join(MANAGERS)}.")
        server = _server_environment(manager)
        if manager == LOCAL:
            return server.with_decision("env_manager is 'local': the server's own environment.")
        if model_dir is None or not model_dir.is_dir():
            return server.with_decision("The model's files are not local: the server's own environment.")
        wanted = await asyncio.to_thread(reqs.read, model_dir)
        if overrides:
            merged = reqs.override(wanted.requirements, reqs.normalise(list(overrides), model_dir))
            wanted = reqs.ModelRequirements(wanted.python, merged, f"{wanted.source} with overrides")
        if manager == AUTO:
            unmet = await asyncio.to_thread(reqs.unmet_by_server, wanted)
            if unmet is None:
                return server.with_decision(
                    "env_manager 'auto': the server's environment already satisfies every requirement "
                    f"({len(wanted.requirements)} from {wanted.source or 'none logged'})."
                )
            why = f"env_manager 'auto': {unmet}"
        else:
            why = "env_manager 'uv': always an environment of the model's own"
        return await self._cached(wanted, model_dir, manager, waiting, why)

    async def _cached(
        self,
        wanted: reqs.ModelRequirements,
        model_dir: Path,
        manager: str,
        waiting: Callable[[str], None],
        why: str,
    ) -> Environment:
        interpreter, note = await self._interpreter(wanted.python)
        requirements = reqs.with_worker_packages(wanted.requirements)
        key = environment_key(interpreter.version, requirements)
        env = Environment(
            str(self.root / key / "bin" / "python"),
            key,
            manager,
            interpreter.version,
            str(self.root / key),
            self.root / f"{key}.log",
        )
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if (lease := self._leases.get(key)) is not None and self._complete(key):
                return _reused(lease.env, f"already in use by this server; {why}")
            fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await _flock(fd, fcntl.LOCK_SH)
                if not self._complete(key):
                    await _flock(fd, fcntl.LOCK_EX)
                    if not self._complete(key):
                        waiting(f"Building the Python environment {key} with uv ({why}).")
                        await self._build(key, env, interpreter, note, requirements, wanted, model_dir)
                        env.decision = f"Built environment {key} ({why})."
                    await _flock(fd, fcntl.LOCK_SH)
                if not env.decision:
                    env.decision = f"Reusing environment {key}, already built ({why})."
            except BaseException:
                os.close(fd)
                raise
            _touch(self.root / key / MARKER)
            self._leases[key] = _Lease(fd, env)
        return env

    def _complete(self, key: str) -> bool:
        return (self.root / key / MARKER).is_file()

    async def _interpreter(self, wanted: str | None) -> tuple[Interpreter, str]:
        """The machine's interpreter closest to the logged version, and a note when it is not exact."""
        interpreters = self._interpreters
        if interpreters is None:
            interpreters, listed = await asyncio.to_thread(find_interpreters, self.uv, self.list_timeout_s)
            # Only a complete listing is kept: after a timed-out or failed `uv python list` (uv waiting
            # on its cache lock during another build) the next build asks again, rather than missing
            # the interpreters uv would have found until the server restarts.
            if listed:
                self._interpreters = interpreters
        server = Interpreter(sys.executable, reqs.server_python())
        assert interpreters is not None  # the cached list, or the one just listed
        found = [*interpreters, server]  # the server's own counts: it is on this machine
        if not wanted:
            return server, "The model logged no Python version: using the server's."
        for match in (lambda i: i.version == wanted, lambda i: reqs.minor(i.version) == reqs.minor(wanted)):
            candidates = [i for i in found if match(i)]
            if candidates:
                best = max(candidates, key=lambda i: _version_tuple(i.version))
                if best.version == wanted:
                    return best, f"Python {wanted}, as logged, from {best.path}."
                return best, f"Python {wanted} (as logged) is not on this machine: using {best.version}."
        return server, (
            f"Python {wanted} (as logged) is not on this machine and no {'.'.join(reqs.minor(wanted))}.x is: "
            f"using the server's Python {server.version} instead."
        )

    # ----------------------------------------------------------------- building
    async def _build(
        self,
        key: str,
        env: Environment,
        interpreter: Interpreter,
        note: str,
        requirements: tuple[str, ...],
        wanted: reqs.ModelRequirements,
        model_dir: Path,
    ) -> None:
        for stale in self.root.glob(f".tmp-{key}-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        assert env.log_path is not None
        with open(env.log_path, "w") as out:
            _header(out, key, note, requirements, wanted)
            try:
                await self._uv(
                    out, ["venv", "--quiet", "--relocatable", "--python", interpreter.path, str(tmp)]
                )
                (tmp / "requirements.txt").write_text("\n".join(requirements) + "\n")
                await self._uv(
                    out,
                    [
                        "pip",
                        "install",
                        "--python",
                        str(tmp / "bin" / "python"),
                        "-r",
                        str(tmp / "requirements.txt"),
                    ],
                    cwd=model_dir,
                )
                size = await asyncio.to_thread(tree_size, tmp)
                meta = {
                    "key": key,
                    "python": interpreter.version,
                    "requirements": list(requirements),
                    "size": size,
                }
                (tmp / MARKER).write_text(json.dumps(meta, indent=1))
                os.rename(tmp, self.root / key)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, EnvironmentBuildFailed):
                    exc.log_path = env.log_path
                out.write(f"\nBuild FAILED after {time.monotonic() - started:.1f} s: {exc}\n")
                raise
            out.write(
                f"\nBuilt environment {key} in {time.monotonic() - started:.1f} s ({size / 2**20:.0f} MiB).\n"
            )
        await asyncio.to_thread(self.evict)

    async def _uv(self, out: TextIO, args: list[str], cwd: Path | None = None) -> None:
        out.write(f"$ uv {' '.join(args)}\n")
        out.flush()
        proc = await asyncio.create_subprocess_exec(
            self.uv,
            *args,
            stdout=out,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"},
            preexec_fn=_die_with_parent,
        )
        assert proc.stderr is not None
        try:
            stderr = await asyncio.wait_for(proc.stderr.read(), self.build_timeout_s)
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        text = stderr.decode("utf-8", "replace")
        out.write(text)
        out.flush()
        if code != 0:
            raise EnvironmentBuildFailed(_resolver_error(text) or f"uv {args[0]} exited with code {code}")

    # ----------------------------------------------------------------- eviction
    def evict(self) -> list[str]:
        """Remove the least recently used environments nobody holds until the cache fits its cap."""
        entries = []
        for marker in self.root.glob(f"*/{MARKER}"):
            try:
                size = json.loads(marker.read_text()).get("size", 0)
                entries.append((marker.stat().st_mtime, marker.parent.name, int(size)))
            except (OSError, ValueError):
                continue
        total = sum(size for _, _, size in entries)
        removed = []
        for _, key, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if self._remove_if_unused(key):
                removed.append(key)
                total -= size
        return removed

    def _remove_if_unused(self, key: str) -> bool:
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # a server or a notebook is using it
            trash = self.root / f".trash-{key}-{uuid.uuid4().hex[:8]}"
            os.rename(self.root / key, trash)  # out of sight in one step, then deleted at leisure
            shutil.rmtree(trash, ignore_errors=True)
            log.info("removed the unused Python environment %s (cache over its size cap)", key)
            return True
        finally:
            os.close(fd)

    def build_log(self, key: str) -> str:
        path = self.root / f"{key}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def release(self, key: str) -> None:
        lease = self._leases.pop(key, None)
        if lease is not None:
            os.close(lease.fd)

    def close(self) -> None:
        for key in list(self._leases):
            self.release(key)


def environment_key(python_version: str, requirements: tuple[str, ...]) -> str:
    spec = json.dumps({"recipe": RECIPE, "python": python_version, "requirements": sorted(requirements)})
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def entity_manager(default: str, environment_vars: dict[str, str]) -> str:
    """The env manager of one served entity: its environment_vars override the server setting."""
    return environment_vars.get(ENV_MANAGER_VAR, default).strip().lower()


def find_interpreters(uv_bin: str, timeout_s: float = 30) -> tuple[list[Interpreter], bool]:
    """Interpreters already on this machine (only PyPI is reachable, so uv may not download any):
    those uv finds on the PATH and pyenv's versions; and whether uv's listing was complete (it did
    not time out or fail), which says whether the result may be cached."""
    import subprocess

    paths: list[str] = []
    listed = False
    # A slow or stuck listing (uv waits on its cache lock while another build holds it) must not fail
    # the deploy: pyenv's versions and the server's own interpreter remain to choose from.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(
            [uv_bin, "python", "list", "--only-installed", "--output-format", "json"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            entries = json.loads(listing.stdout or "[]")
            paths += [p["path"] for p in entries if p.get("path")]
            listed = listing.returncode == 0
    paths = [p for p in paths if "/shims/" not in p]  # pyenv's shims run whichever version is selected
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    paths += [str(p) for p in sorted(pyenv.glob("*/bin/python3"))]
    found: dict[str, Interpreter] = {}
    for path in paths:
        version = _probe(path)
        if version and version[0] == "3" and os.path.realpath(path) not in found:
            found[os.path.realpath(path)] = Interpreter(path, version)
    return list(found.values()), listed


def _probe(path: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def tree_size(path: Path) -> int:
    """Disk use of a folder, each hard-linked file counted once (uv links files from its cache)."""
    seen: set[int] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
    return total


def worker_path(root: Path) -> Path:
    """A folder holding only a link to our package, for PYTHONPATH of workers in model environments:
    they import jupyter_serving.worker from it without the server's site-packages coming along."""
    folder = root / ".worker-path"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "jupyter_serving"
    target = Path(__file__).resolve().parents[1]  # jupyter_serving/
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        tmp = folder / f".link-{uuid.uuid4().hex[:8]}"
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    return folder


def worker_env(env: Environment, worker_dir: Path) -> dict[str, str]:
    """Variables for a worker in a built environment: our package on its path, nothing of the server's."""
    if env.name == "server":
        return {}
    return {"PYTHONPATH": str(worker_dir), "PYTHONNOUSERSITE": "1", "VIRTUAL_ENV": env.path}


def _server_environment(manager: str) -> Environment:
    return Environment(sys.executable, "server", manager, reqs.server_python())


def _reused(env: Environment, why: str) -> Environment:
    return env.with_decision(f"Reusing environment {env.name} ({why}).")


def _header(
    out: TextIO, key: str, note: str, requirements: tuple[str, ...], wanted: reqs.ModelRequirements
) -> None:
    out.write(f"Building Python environment {key}\n{note}\n")
    out.write(f"Requirements (from {wanted.source or 'none logged'}, plus the worker's):\n")
    out.writelines(f"  {r}\n" for r in requirements)
    out.flush()


def _resolver_error(stderr: str) -> str:
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Using ")]
    for i, line in enumerate(lines):
        if line.startswith("error"):
            return "\n".join(lines[i:])[:4000]
    return "\n".join(lines[-10:])[:4000]


async def _flock(fd: int, op: int) -> None:
    """Take a file lock without blocking the loop, cancellable while waiting."""
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(LOCK_POLL_S)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _die_with_parent() -> None:
    """uv must not outlive a server killed mid-build (Linux; elsewhere it finishes in the temp dir)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())
