"""Running an app's functions against the database."""

from syncline.runtime._context import (
    ANONYMOUS,
    ActionCtx,
    Auth,
    Identity,
    MutationCtx,
    QueryCtx,
    SystemMutationCtx,
    SystemQueryCtx,
)
from syncline.runtime._deployment import Deployment, DeploymentManager, DeploymentSource
from syncline.runtime._log_feed import LOG_ROOM, LogFeed
from syncline.runtime._results import (
    ActionResult,
    MutationResult,
    QueryResult,
    RunnerConfig,
    UncaughtFunctionError,
)
from syncline.runtime._runner import FunctionRunner
from syncline.runtime._system import (
    HEALTH_FEED,
    SYSTEM_PREFIX,
    HealthSource,
    SystemServices,
    is_system_path,
    system_function,
    system_registry,
)
from syncline.runtime._versions import (
    VersionRecord,
    describe_version,
    load_versions,
    record_version,
)

__all__ = [
    "ANONYMOUS",
    "HEALTH_FEED",
    "LOG_ROOM",
    "SYSTEM_PREFIX",
    "ActionCtx",
    "ActionResult",
    "Auth",
    "Deployment",
    "DeploymentManager",
    "DeploymentSource",
    "FunctionRunner",
    "HealthSource",
    "Identity",
    "LogFeed",
    "MutationCtx",
    "MutationResult",
    "QueryCtx",
    "QueryResult",
    "RunnerConfig",
    "SystemMutationCtx",
    "SystemQueryCtx",
    "SystemServices",
    "UncaughtFunctionError",
    "VersionRecord",
    "describe_version",
    "is_system_path",
    "load_versions",
    "record_version",
    "system_function",
    "system_registry",
]
