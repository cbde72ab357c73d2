"""The deployment as a cluster runner sees it: the app's code over the stored catalog.

Tables and indexes are created by the txn leader when it applies the schema;
runners only load them, and reload when a commit says they changed.
"""

from __future__ import annotations

from syncline._errors import SchemaError
from syncline.app import App
from syncline.database import DataModel
from syncline.runtime import Deployment
from syncline.runtime._deployment import CATALOG_VERSION_KEY
from syncline.storage import Storage


class ClusterDeployments:
    """A DeploymentSource reading the catalog the txn leader maintains."""

    def __init__(self, storage: Storage, app: App) -> None:
        self._storage = storage
        self._app = app
        self._current: Deployment | None = None

    @property
    def current(self) -> Deployment:
        if self._current is None:
            raise SchemaError("the deployment has not been loaded yet")
        return self._current

    async def refresh(self) -> None:
        catalog = await self._storage.load_catalog()
        stored = await self._storage.get_meta(CATALOG_VERSION_KEY)
        model = DataModel(catalog, self._app.schema, catalog_version=int(stored or 0))
        version = self._current.version + 1 if self._current else 1
        self._current = Deployment(self._app, model, version)

    async def wait_stable(self) -> None:
        """Index changes happen on the txn leader; a stale catalog is caught at commit."""

    async def ensure_table(self, name: str) -> DataModel:
        raise SchemaError(
            f"table {name!r} does not exist; in a cluster every table must be declared in schema.py"
        )
