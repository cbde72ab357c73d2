"""Running an app's functions against the database."""

from syncline.runtime._context import ANONYMOUS, ActionCtx, Auth, Identity, MutationCtx, QueryCtx
from syncline.runtime._deployment import Deployment, DeploymentManager, DeploymentSource
from syncline.runtime._logs import install_print_capture
from syncline.runtime._runner import (
    ActionResult,
    FunctionRunner,
    MutationResult,
    QueryResult,
    RunnerConfig,
    UncaughtFunctionError,
)

__all__ = [
    "ANONYMOUS",
    "ActionCtx",
    "ActionResult",
    "Auth",
    "Deployment",
    "DeploymentManager",
    "DeploymentSource",
    "FunctionRunner",
    "Identity",
    "MutationCtx",
    "MutationResult",
    "QueryCtx",
    "QueryResult",
    "RunnerConfig",
    "UncaughtFunctionError",
    "install_print_capture",
]
