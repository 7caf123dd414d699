"""What a logged MLflow model asks of its Python environment, read from its own files and normalised.

Pure functions over the model directory: which Python it was logged with, which packages it
needs (``python_env.yaml``, else ``requirements.txt``, else the pip section of ``conda.yaml``), the
packages the worker adds, and whether the server's own environment already satisfies them.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# What jupyter_serving.worker imports besides its own modules (worker/scoring.py): MLflow, pandas, NumPy.
WORKER_PACKAGES = ("pandas", "numpy")
MLFLOW_NAMES = ("mlflow", "mlflow-skinny")


@dataclass(frozen=True)
class ModelRequirements:
    """The model's logged Python version (or None) and its normalised requirement lines."""

    python: str | None
    requirements: tuple[str, ...]
    source: str  # the file they came from, for the build log


def read(model_dir: Path) -> ModelRequirements:
    """The model's requirements as MLflow logged them; an empty set when it logged none."""
    python_env = model_dir / "python_env.yaml"
    if python_env.is_file():
        doc = _yaml(python_env)
        lines = [str(d) for d in doc.get("dependencies") or []]
        return ModelRequirements(_version(doc.get("python")), normalise(lines, model_dir), python_env.name)
    requirements = model_dir / "requirements.txt"
    if requirements.is_file():
        return ModelRequirements(None, normalise(_lines(requirements), model_dir), requirements.name)
    conda = model_dir / "conda.yaml"
    if conda.is_file():
        return _from_conda(_yaml(conda), model_dir)
    return ModelRequirements(None, (), "")


def _from_conda(doc: dict[str, Any], model_dir: Path) -> ModelRequirements:
    python: str | None = None
    pip: list[str] = []
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            pip.extend(str(d) for d in dep.get("pip") or [])
        elif isinstance(dep, str) and dep.replace(" ", "").startswith("python="):
            python = _version(dep.split("=", 1)[1])
    return ModelRequirements(python, normalise(pip, model_dir), "conda.yaml")


def normalise(lines: list[str], base: Path) -> tuple[str, ...]:
    """Requirement lines in one canonical spelling, sorted and de-duplicated, `-r` files expanded, so
    models that ask for the same packages get the same environment key."""
    out: set[str] = set()
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            included = base / line.split(None, 1)[1].strip()
            out.update(normalise(_lines(included), included.parent))
            continue
        out.add(_canonical(line))
    return tuple(sorted(out))


def _canonical(line: str) -> str:
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return line  # a URL, a local wheel, an option: passed to the resolver as written
    name = canonicalize_name(req.name)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    if req.url:
        return f"{name}{extras} @ {req.url}" + (f" ; {req.marker}" if req.marker else "")
    spec = ",".join(sorted(str(s) for s in req.specifier))
    return f"{name}{extras}{spec}" + (f" ; {req.marker}" if req.marker else "")


def override(requirements: tuple[str, ...], overrides: tuple[str, ...]) -> tuple[str, ...]:
    """`pip_requirements_override` as `mlflow.models.predict` reads it: each override replaces the
    model's requirement of the same package, or adds one."""
    replaced = {_name(o) for o in overrides}
    return tuple(sorted({*(r for r in requirements if _name(r) not in replaced), *overrides}))


def with_worker_packages(requirements: tuple[str, ...]) -> tuple[str, ...]:
    """The model's requirements plus what the worker imports: MLflow (the server's version unless the
    model logged its own), pandas and NumPy (at whatever version the resolver pairs with the rest)."""
    names = {_name(r) for r in requirements}
    extra = [p for p in WORKER_PACKAGES if p not in names]
    if not names & set(MLFLOW_NAMES):
        extra.append(f"mlflow=={importlib.metadata.version('mlflow')}")
    return tuple(sorted({*requirements, *extra}))


def unmet_by_server(requirements: ModelRequirements) -> str | None:
    """Why the server's own environment cannot serve the model exactly, or None when it can."""
    if requirements.python and minor(requirements.python) != minor(server_python()):
        return f"the model was logged with Python {requirements.python}, the server runs {server_python()}"
    for line in requirements.requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            return f"'{line}' is not a plain requirement"
        if req.url:
            return f"'{line}' installs from a URL"
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return f"{req.name} is not installed in the server's environment"
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            return f"the model requires {line}, the server has {req.name}=={installed}"
    return None


def server_python() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _name(line: str) -> str:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return ""


def _version(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(path.read_text())
    return doc if isinstance(doc, dict) else {}
