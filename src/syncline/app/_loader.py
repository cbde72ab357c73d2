"""Loading an app directory: its function modules, schema and auth config.

Each load imports the app under a fresh synthetic package, so ``syncline dev``
can reload changed code without restarting, and modules can import their
private helpers relatively (``from ._ot import transform``).
"""

from __future__ import annotations

import importlib
import itertools
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from syncline._errors import ConfigError, SynclineError
from syncline.auth import AuthProvider, load_auth_config
from syncline.functions import (
    FunctionKind,
    FunctionSpec,
    capture_app_loggers,
    check_args,
    resolve_reference,
)
from syncline.jobs import CronJob, Crons
from syncline.schema import SchemaDefinition

_SPECIAL_MODULES = {"schema", "auth_config", "crons"}
_SKIPPED_DIRS = {"__pycache__", "node_modules", "_generated"}
_load_counter = itertools.count(1)


class AppLoadError(ConfigError):
    """The app's code failed to import; ``details`` has the traceback for the developer."""

    code = "AppLoadFailed"

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class App:
    """One loaded version of an app."""

    directory: Path
    functions: dict[str, FunctionSpec]
    schema: SchemaDefinition | None
    auth_providers: list[AuthProvider] = field(default_factory=list)
    crons: dict[str, CronJob] = field(default_factory=dict)
    """From ``crons.py``, each with its function's path resolved."""


def _module_paths(directory: Path) -> list[str]:
    """Function modules as paths relative to the app, without ``.py``."""
    found: list[str] = []
    for file in sorted(directory.rglob("*.py")):
        relative = file.relative_to(directory)
        if any(part in _SKIPPED_DIRS or part.startswith((".", "_")) for part in relative.parts):
            continue
        module = relative.with_suffix("").as_posix()
        if module in _SPECIAL_MODULES:
            continue
        found.append(module)
    return found


def load_app(directory: Path) -> App:
    """Import every module of the app and collect its functions."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise ConfigError(f"app directory {directory} does not exist")
    package = f"_syncline_app_{next(_load_counter)}"
    root = types.ModuleType(package)
    root.__path__ = [str(directory)]
    sys.modules[package] = root
    capture_app_loggers(package)
    try:
        functions: dict[str, FunctionSpec] = {}
        for module_path in _module_paths(directory):
            module = _import(package, module_path)
            for attr, value in vars(module).items():
                if not isinstance(value, FunctionSpec) or attr.startswith("_"):
                    continue
                if value.handler.__module__ != module.__name__:
                    continue  # re-exported from another module: registered there
                value.path = f"{module_path}:{attr}"
                functions[value.path] = value
        schema = _load_schema(package, directory)
        providers = load_auth_config(directory)
        crons = _load_crons(package, directory, functions)
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
    return App(directory, functions, schema, providers, crons)


def _import(package: str, module_path: str) -> types.ModuleType:
    name = f"{package}.{module_path.replace('/', '.')}"
    try:
        return importlib.import_module(name)
    except Exception as exc:
        details = traceback.format_exc()
        raise AppLoadError(
            f"failed to load {module_path}.py: {type(exc).__name__}: {exc}", details=details
        ) from exc


def _load_schema(package: str, directory: Path) -> SchemaDefinition | None:
    if not (directory / "schema.py").exists():
        return None
    module = _import(package, "schema")
    schema = getattr(module, "schema", None)
    if schema is None:
        schema = getattr(module, "default", None)
    if not isinstance(schema, SchemaDefinition):
        raise AppLoadError("schema.py must define `schema = define_schema({...})`")
    return schema


def _load_crons(
    package: str, directory: Path, functions: dict[str, FunctionSpec]
) -> dict[str, CronJob]:
    if not (directory / "crons.py").exists():
        return {}
    module = _import(package, "crons")
    declared = getattr(module, "crons", None)
    if not isinstance(declared, Crons):
        raise AppLoadError("crons.py must define `crons = cron_jobs()` and declare crons on it")
    loaded: dict[str, CronJob] = {}
    for name, job in declared.jobs.items():
        try:
            path = resolve_reference(job.ref)
            spec = functions.get(path)
            if spec is None:
                raise ConfigError(f"no function '{path}' in the app")
            if spec.kind is FunctionKind.QUERY:
                raise ConfigError(f"'{path}' is a query; crons run mutations and actions")
            check_args(spec, job.args, id_table=None)
        except SynclineError as exc:
            raise AppLoadError(f"crons.py: cron {name!r}: {exc.message}") from None
        loaded[name] = CronJob(name, job.ref, job.args, job.schedule, path)
    return loaded
