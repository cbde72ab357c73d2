"""Whether a Docker daemon answers, for callers that can use containers instead."""

from __future__ import annotations

import gc
import importlib
import warnings
from types import ModuleType


def docker_available() -> bool:
    """True only if the optional ``docker`` package is installed and a daemon answers ping."""
    try:
        docker = importlib.import_module("docker")
    except ImportError:
        return False
    # docker-py leaves its socket in a reference cycle when no daemon answers; its
    # ResourceWarning would surface at some later garbage collection, far from here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _ping(docker)
        finally:
            gc.collect()


def _ping(docker: ModuleType) -> bool:
    try:
        client = docker.from_env()
    except Exception:
        # from_env raises DockerException (among others) when no daemon is reachable.
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()
