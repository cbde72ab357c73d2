"""The deployment as a cluster runner sees it: the live code over the stored catalog.

Tables and indexes are created by the txn leader when it applies the schema;
runners only load them, and reload when a commit says they changed (or a sync
node's poll sees a new catalog version). The code is the version last deployed
(``syncline deploy``), loaded from storage when its number changes; before any
deploy it is the app the node was started with. Listeners hear about every
reload that changed the catalog or the code, so subscriptions can re-run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from syncline._errors import SchemaError
from syncline.app import App
from syncline.cluster._code import load_stored_bundle, stored_app_version
from syncline.database import DataModel
from syncline.runtime import Deployment, VersionRecord, load_versions
from syncline.runtime._deployment import CATALOG_VERSION_KEY
from syncline.storage import Storage

log = logging.getLogger(__name__)


class ClusterDeployments:
    """A DeploymentSource reading the catalog the txn leader maintains."""

    def __init__(self, storage: Storage, app: App) -> None:
        """``app``: what runs until a version is deployed."""
        self._storage = storage
        self._app = app
        self._app_version = 0
        self._code_dir: Path | None = None
        self._current: Deployment | None = None
        self.versions: tuple[VersionRecord, ...] = ()
        """The deployed versions, oldest first (read with the code)."""
        self._listeners: list[Callable[[Deployment], None]] = []

    @property
    def app_version(self) -> int:
        """The deployed version running here (0: the app the node started with)."""
        return self._app_version

    def close(self) -> None:
        """Remove the loaded code's files."""
        if self._code_dir is not None:
            shutil.rmtree(self._code_dir, ignore_errors=True)
            self._code_dir = None

    @property
    def current(self) -> Deployment:
        if self._current is None:
            raise SchemaError("the deployment has not been loaded yet")
        return self._current

    def on_change(self, listener: Callable[[Deployment], None]) -> None:
        """Call ``listener(deployment)`` after a refresh that changed the catalog version."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Deployment], None]) -> None:
        self._listeners.remove(listener)

    async def stored_catalog_version(self) -> int:
        """The catalog version the txn leader last applied (0: never)."""
        return int(await self._storage.get_meta(CATALOG_VERSION_KEY) or 0)

    async def stale(self) -> bool:
        """Whether storage holds a newer catalog or code than this deployment."""
        if await stored_app_version(self._storage) != self._app_version:
            return True
        return await self.stored_catalog_version() != self.current.model.catalog_version

    async def _load_code(self) -> bool:
        """Load the deployed code if its version changed; whether it did."""
        if await stored_app_version(self._storage) == self._app_version:
            return False
        stored = await load_stored_bundle(self._storage)
        if stored is None:
            return False
        if self._code_dir is None:
            self._code_dir = Path(tempfile.mkdtemp(prefix="syncline-code-"))
        version, bundle = stored
        self._app = bundle.load(self._code_dir)
        self.versions = await load_versions(self._storage)
        log.info("loaded app version %d -> %d (%s)", self._app_version, version, bundle.digest[:12])
        self._app_version = version
        return True

    async def refresh(self) -> None:
        # The version first: if the leader changes the catalog between the two
        # reads, the model pairs a newer catalog with an older version, which the
        # leader refuses as a catalog change (and the runner reloads), never a
        # stale catalog with the new version.
        code_changed = await self._load_code()
        stored = await self.stored_catalog_version()
        catalog = await self._storage.load_catalog()
        model = DataModel(catalog, self._app.schema, catalog_version=stored)
        previous = self._current
        # The deployed version's number (0: the app the node started with), the
        # same on every node.
        self._current = deployment = Deployment(self._app, model, self._app_version)
        if previous is not None and (code_changed or previous.model.catalog_version != stored):
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
