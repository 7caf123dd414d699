"""The README's tour, run as a user would follow it, so the README cannot drift from the product.

Every fenced block of README.md is one of:
- a Python block, or any block whose first line is a `%%` cell magic: run in one IPython shell (a
  subprocess, like a notebook kernel), in README order, sharing one namespace;
- a bash block: run with `bash -eo pipefail`;
- the block after `<!-- readme-test: server -->`: the command that starts the server, run in the
  background on a free port, which replaces 8765 in the blocks after it;
- a `text` block right after a line `*Output*`: what the block before it must print, exactly;
- a block after `<!-- not-run: reason -->`: skipped, with the reason in the README.
Any other block fails `test_every_block_is_run_or_says_why_not`, so a new snippet is tested by
default. The tour starts from an empty folder: the README's own snippet makes the MLflow registry and
the README's own command starts the server (a real `jupyter-serving serve`, real workers), so a
changed route, field, flag or output breaks `test_readme_tour_runs`; `test_a_drifted_snippet_fails`
shows that it does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from serving_support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

README = Path(__file__).resolve().parents[2] / "README.md"
PORT = "8765"  # the port the README's snippets use; replaced by the server's
TOKEN = "dapi-local"  # the token the README's server command sets
CELL_TIMEOUT_S = 240.0
SENTINEL = "@@readme-cell@@"

FENCE = re.compile(r"^```([\w-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(not-run|readme-test)\s*:\s*(.*?)\s*-->$")

# The kernel: runs cells the way a notebook does and answers one JSON line per cell, after a
# sentinel, on the stdout it had before cells could print anything.
DRIVER = f"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

config = Config()
config.HistoryAccessor.enabled = False
config.InteractiveShell.colors = "nocolor"
shell = InteractiveShell.instance(config=config)
out = sys.stdout
for line in sys.stdin:
    with capture_output() as cap:
        result = shell.run_cell(json.loads(line))
    error = result.error_before_exec or result.error_in_exec
    answer = {{"ok": result.success, "stdout": cap.stdout, "stderr": cap.stderr,
               "error": None if error is None else repr(error)}}
    out.write({SENTINEL!r} + json.dumps(answer) + "\\n")
    out.flush()
"""


@dataclass
class Block:
    """One fenced block of the README."""

    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("not-run", reason) or ("readme-test", what)
    is_output: bool  # a `text` block introduced by *Output*
    expected: str | None = None  # for a run block: the output block that follows it

    @property
    def kind(self) -> str:
        if self.marker and self.marker[0] == "not-run":
            return "not-run"
        if self.marker == ("readme-test", "server"):
            return "server"
        if self.is_output:
            return "output"
        if self.lang == "python" or self.code.startswith("%%"):
            return "ipython"
        if self.lang in ("bash", "sh", "shell"):
            return "bash"
        return "unaccounted"

    def where(self) -> str:
        return f"README.md line {self.line} ({self.lang} block):\n{self.code}"


def parse_readme(text: str) -> list[Block]:
    """The README's fenced blocks, each with the marker comment and the `*Output*` label before it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    previous = ""  # the last non-blank line outside a block
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md line {start + 1}: unclosed code block"
        marker = MARKER.match(previous)
        block = Block(
            line=start + 1,
            lang=opening.group(1),
            code="\n".join(body) + "\n",
            marker=(marker.group(1), marker.group(2)) if marker else None,
            is_output=opening.group(1) == "text" and previous == "*Output*",
        )
        if block.is_output:
            assert blocks and blocks[-1].kind in ("ipython", "bash"), (
                f"README.md line {block.line}: an *Output* block must follow a block that is run"
            )
            blocks[-1].expected = block.code
        blocks.append(block)
        previous = "```"
        i += 1
    return blocks


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that points at another registry or server (the
    session fixtures export MLFLOW_* for the other tests), with the venv's scripts on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DATABRICKS_", "JUPYTER_SERVING_", "JPY_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Kernel:
    """An IPython shell in a subprocess, fed cells one at a time."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.noise: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, code: str) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(code) + "\n")
        self.proc.stdin.flush()
        while True:
            try:
                line = self.lines.get(timeout=CELL_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"cell still running after {CELL_TIMEOUT_S:g} s") from None
            if line is None:
                raise AssertionError("the kernel exited:\n" + "".join(self.noise[-40:]))
            if line.startswith(SENTINEL):
                return json.loads(line[len(SENTINEL) :])
            self.noise.append(line)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Tour:
    """A folder, a kernel and a server, as a user following the README has them."""

    workdir: Path
    kernel: Kernel
    env: dict[str, str]
    port: int | None = None  # the server's, once it is listening
    server: subprocess.Popen[bytes] | None = None

    def code(self, block: Block) -> str:
        return block.code if self.port is None else block.code.replace(PORT, str(self.port))

    def start_server(self, block: Block) -> None:
        """Run the README's server command with `--port 0 --info-file F` for its `--port 8765` (a
        port picked by the kernel cannot be taken by another test in between), and wait until it
        answers; later blocks get its port for 8765."""
        assert f"--port {PORT}" in block.code, (
            f"the server command no longer uses --port {PORT}: {block.where()}"
        )
        info = self.workdir / "server-info.json"
        command = block.code.replace(f"--port {PORT}", f"--port 0 --info-file {info}")
        log = (self.workdir / "server.log").open("wb")
        self.server = subprocess.Popen(
            ["bash", "-eo", "pipefail", "-c", command],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole at the end
        )

        def up() -> bool:
            assert self.server is not None and self.server.poll() is None, (
                f"the README's server command exited: {block.where()}\n"
                + (self.workdir / "server.log").read_text(errors="replace")[-4000:]
            )
            if not info.exists():
                return False
            url = json.loads(info.read_text())["url"].rstrip("/")
            try:
                health = requests.get(
                    f"{url}/api/2.0/jupyter-serving/health",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=5,
                )
            except requests.ConnectionError:
                return False
            self.port = int(url.rsplit(":", 1)[1])
            return health.ok

        eventually(up, timeout=120, interval=0.2, what="the README's server answering")
        # What the README's notebook section tells a reader outside Jupyter to set.
        answer = self.kernel.run(
            "import os\n"
            f"os.environ['JUPYTER_SERVING_URL'] = 'http://127.0.0.1:{self.port}'\n"
            f"os.environ['JUPYTER_SERVING_TOKEN'] = {TOKEN!r}\n"
        )
        assert answer["ok"], answer

    def run(self, block: Block) -> None:
        """Run one block; AssertionError (naming the README line) if it fails or prints otherwise."""
        if block.kind == "server":
            self.start_server(block)
            return
        if block.kind == "ipython":
            answer = self.kernel.run(self.code(block))
            ok, printed = bool(answer["ok"]), str(answer["stdout"])
            detail = f"{answer['error']}\n{answer['stdout']}{answer['stderr']}"
        elif block.kind == "bash":
            done = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", self.code(block)],
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=CELL_TIMEOUT_S,
            )
            ok, printed = done.returncode == 0, done.stdout
            detail = f"exit status {done.returncode}\n{done.stdout}{done.stderr}"
        else:
            raise AssertionError(f"not a block that runs: {block.where()}")
        assert ok, f"{block.where()}\nfailed: {detail}"
        if block.expected is not None:
            assert printed.strip() == block.expected.strip(), (
                f"{block.where()}\nprinted:\n{printed}\nbut the README says:\n{block.expected}"
            )

    def stop(self) -> None:
        self.kernel.stop()
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()


@pytest.fixture(scope="module")
def blocks() -> list[Block]:
    return parse_readme(README.read_text())


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tour]:
    workdir = tmp_path_factory.mktemp("readme-tour")
    env = clean_environment()
    tour = Tour(workdir, Kernel(workdir, env), env)
    try:
        yield tour
    finally:
        tour.stop()


def test_every_block_is_run_or_says_why_not(blocks: list[Block]) -> None:
    unaccounted = [b.where() for b in blocks if b.kind == "unaccounted"]
    assert not unaccounted, (
        "README blocks that are neither run nor marked `<!-- not-run: reason -->`:\n" + "\n".join(unaccounted)
    )
    assert all(b.marker[1] for b in blocks if b.marker), "a marker without a reason"
    kinds = [b.kind for b in blocks]
    assert kinds.count("server") == 1, "exactly one block starts the server"
    assert kinds.index("server") < kinds.index("bash"), "the server starts before the shell snippets"
    # The tour covers what the README promises: the SDK, MLflow, curl and the notebook magics.
    run_code = "".join(b.code for b in blocks if b.kind in ("ipython", "bash"))
    for needle in ("WorkspaceClient", "get_deploy_client", "curl ", "%load_ext", "%%serve", "%serve "):
        assert needle in run_code, f"no README snippet that runs uses {needle!r}"


def test_readme_tour_runs(blocks: list[Block], tour: Tour) -> None:
    ran = 0
    for block in blocks:
        if block.kind in ("server", "ipython", "bash"):
            tour.run(block)
            ran += 1
    assert ran >= 8, f"only {ran} README blocks ran"


def test_a_drifted_snippet_fails(blocks: list[Block], tour: Tour) -> None:
    """The checks can fail: a renamed route, a renamed field or a different answer each break the
    README's own snippets against the same live server (the tour has created its endpoints)."""
    if tour.server is None:  # run alone: bring the tour's server and endpoints up first
        for block in blocks:
            if block.kind in ("server", "ipython", "bash"):
                tour.run(block)
    curl = next(b for b in blocks if b.kind == "bash" and "curl " in b.code)
    mlflow_block = next(b for b in blocks if b.kind == "ipython" and "get_deploy_client" in b.code)
    drifts = [
        (curl, "/invocations", "/invocation"),  # a route that does not exist
        (curl, '"dataframe_records"', '"dataframe_rows"'),  # a field the server refuses
        (mlflow_block, '["state"]', '["status"]'),  # a field the API does not return
    ]
    for block, old, new in drifts:
        assert old in block.code, f"{old!r} is no longer in {block.where()}"
        drifted = Block(block.line, block.lang, block.code.replace(old, new), None, False, block.expected)
        with pytest.raises(AssertionError):
            tour.run(drifted)
    # And the unchanged blocks still pass, so it was the drift that failed.
    tour.run(curl)
    tour.run(mlflow_block)


# Flags of `jupyter-serving serve` that start the process rather than configure serving.
LAUNCHER_FLAGS = {"help", "host", "port", "token-file", "base-url", "info-file", "log-level"}


def readme_settings(text: str) -> set[str]:
    """The setting names in the first column of the README's settings table."""
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def test_the_settings_table_names_the_server_flags() -> None:
    """Every setting in the README is a flag of `jupyter-serving serve`, and every flag is in the
    README: a setting added, renamed or removed without the README fails here."""
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-serving"), "serve", "--help"],
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=120,
        check=True,
    ).stdout
    flags = set(re.findall(r"--(?!no-)([a-z][a-z0-9-]*)", help_text)) - LAUNCHER_FLAGS
    documented = {name.replace("_", "-") for name in readme_settings(README.read_text())}
    assert {"request-timeout-s", "backend", "env-manager"} <= flags, help_text  # the help was read
    assert documented - flags == set(), "in the README's settings table but not a flag of `serve`"
    assert flags - documented == set(), "flags of `serve` missing from the README's settings table"


def test_links_resolve() -> None:
    """Relative links in the README point at files that exist, and `#anchors` at headings there."""
    text = README.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = README.parent / path if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
            if anchor not in slugs:
                broken.append(target)
    assert not broken, f"README links to nothing: {broken}"


def test_the_contract_names_fixture_members_that_exist() -> None:
    """docs/CONTRACT.md once described a fixture method that did not exist: every `.member` its
    fixture section names is an attribute of the support classes, and every fixture it names exists."""
    import dataclasses
    import importlib.util

    import serving_support

    # tests/conftest.py by its path: under xdist, `import conftest` may name another layer's conftest.
    spec = importlib.util.spec_from_file_location(
        "tests_root_conftest", README.parent / "tests" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    contract = (README.parent / "docs" / "CONTRACT.md").read_text()
    section = contract.split("\n## Test fixtures", 1)[1].split("\n## ", 1)[0]
    members: set[str] = set()
    for cls in (serving_support.ServingServer, serving_support.MlflowEnv):
        members |= {f.name for f in dataclasses.fields(cls)} | set(dir(cls))
    named = set(re.findall(r"`\.([a-z_]+)", section))
    assert named and named <= members, f"not members of ServingServer / MlflowEnv: {named - members}"
    for fixture in ("mlflow_env", "serving_server", "start_server", "ray_cluster"):
        assert f"`{fixture}`" in section and callable(getattr(conftest, fixture)), fixture
    for helper in ("eventually", "entity", "iris_split"):
        assert f"`{helper}(" in section and callable(getattr(serving_support, helper)), helper
