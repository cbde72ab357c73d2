"""The live version of the app's code, stored with the data.

The txn leader stores each deployed bundle and its version number in the
``meta`` table (after applying its schema); every node loads the stored
version when it starts and whenever the number changes, so a new leader or a
restarted node never runs older code than was deployed.
"""

from __future__ import annotations

from syncline.app import AppBundle
from syncline.storage import Storage

APP_VERSION_KEY = "app_version"
APP_BUNDLE_KEY = "app_bundle"


async def stored_app_version(storage: Storage) -> int:
    """The deployed version number (0: nothing deployed; nodes run their ``--app``)."""
    return int(await storage.get_meta(APP_VERSION_KEY) or 0)


async def load_stored_bundle(storage: Storage) -> tuple[int, AppBundle] | None:
    """The deployed version and its sources, if anything was deployed."""
    # The number first: a deploy racing with this read pairs an older number with a
    # newer bundle, and the next check of the number loads it again; never the reverse.
    version = await stored_app_version(storage)
    text = await storage.get_meta(APP_BUNDLE_KEY)
    if version == 0 or text is None:
        return None
    return version, AppBundle.from_json(text)


async def store_bundle(storage: Storage, version: int, bundle: AppBundle, *, epoch: int) -> None:
    """Make ``bundle`` the live version; FencedError if ``epoch`` no longer leads."""
    await storage.set_meta(APP_BUNDLE_KEY, bundle.to_json(), epoch=epoch)
    await storage.set_meta(APP_VERSION_KEY, str(version), epoch=epoch)
