"""Local PostgreSQL, ZooKeeper and Redis servers, managed as child processes, and a
fault-injecting TCP proxy to put between them.

Used by the integration tests' fixtures and by ``syncline cluster up``. Each server
has ``async start()``, an idempotent ``async stop()``, ``kill()`` (SIGKILL, as a
crash would), ``async restart()``, ``pid`` and ``async with`` support; every start
has a deadline, and its error carries the tail of the server's log.
"""

from syncline.devservers._docker import docker_available
from syncline.devservers._errors import DevServerError
from syncline.devservers._faketime import faketime_environment
from syncline.devservers._fault_proxy import FaultProxy, LocalFaultProxy
from syncline.devservers._postgres import LocalPostgres, StopMode, find_postgres_bin_dir
from syncline.devservers._process import LocalServer, ServerState, free_port, log_tail
from syncline.devservers._redis import LocalRedis
from syncline.devservers._zookeeper import LocalZooKeeper, zookeeper_command

__all__ = [
    "DevServerError",
    "FaultProxy",
    "LocalFaultProxy",
    "LocalPostgres",
    "LocalRedis",
    "LocalServer",
    "LocalZooKeeper",
    "ServerState",
    "StopMode",
    "docker_available",
    "faketime_environment",
    "find_postgres_bin_dir",
    "free_port",
    "log_tail",
    "zookeeper_command",
]
