"""The deployment as a cluster runner sees it: the app's code over the stored catalog.

Tables and indexes are created by the txn leader when it applies the schema;
runners only load them, and reload when a commit says they changed (or a sync
node's poll sees a new catalog version). Listeners hear about every reload that
changed the catalog version, so subscriptions can re-run against it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from syncline._errors import SchemaError
from syncline.app import App
from syncline.database import DataModel
from syncline.runtime import Deployment
from syncline.runtime._deployment import CATALOG_VERSION_KEY
from syncline.storage import Storage

log = logging.getLogger(__name__)


class ClusterDeployments:
    """A DeploymentSource reading the catalog the txn leader maintains."""

    def __init__(self, storage: Storage, app: App) -> None:
        self._storage = storage
        self._app = app
        self._current: Deployment | None = None
        self._listeners: list[Callable[[Deployment], None]] = []

    @property
    def current(self) -> Deployment:
        if self._current is None:
            raise SchemaError("the deployment has not been loaded yet")
        return self._current

    def on_change(self, listener: Callable[[Deployment], None]) -> None:
        """Call ``listener(deployment)`` after a refresh that changed the catalog version."""
        self._listeners.append(listener)

    async def stored_catalog_version(self) -> int:
        """The catalog version the txn leader last applied (0: never)."""
        return int(await self._storage.get_meta(CATALOG_VERSION_KEY) or 0)

    async def refresh(self) -> None:
        # The version first: if the leader changes the catalog between the two
        # reads, the model pairs a newer catalog with an older version, which the
        # leader refuses as a catalog change (and the runner reloads), never a
        # stale catalog with the new version.
        stored = await self.stored_catalog_version()
        catalog = await self._storage.load_catalog()
        model = DataModel(catalog, self._app.schema, catalog_version=stored)
        previous = self._current
        version = previous.version + 1 if previous else 1
        self._current = deployment = Deployment(self._app, model, version)
        if previous is not None and previous.model.catalog_version != stored:
            log.info(
                "catalog version %d -> %d: reloaded tables and indexes",
                previous.model.catalog_version,
                stored,
            )
            for listener in self._listeners:
                listener(deployment)

    async def wait_stable(self) -> None:
        """Index changes happen on the txn leader; a stale catalog is caught at commit."""

    async def ensure_table(self, name: str) -> DataModel:
        raise SchemaError(
            f"table {name!r} does not exist; in a cluster every table must be declared in schema.py"
        )
