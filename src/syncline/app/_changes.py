"""What a new version of an app changes: files, functions, tables, indexes and crons.

``syncline deploy --dry-run`` prints this; a real deploy returns it too.
"""

from __future__ import annotations

from typing import Any

from syncline.app._bundle import AppBundle
from syncline.app._loader import App
from syncline.jobs import CronJob
from syncline.storage import Catalog

_BUILT_IN_INDEXES = ("by_id", "by_creation_time")


def app_changes(
    current: tuple[AppBundle, App] | None, new: tuple[AppBundle, App], catalog: Catalog
) -> dict[str, Any]:
    """The differences between the live version (None: none yet) and ``new``.

    Tables and indexes are compared with the stored catalog, which is what a
    deploy changes: new tables are created, changed indexes rebuilt.
    """
    new_bundle, new_app = new
    old_files = current[0].files if current else {}
    old_functions = set(current[1].functions) if current else set()
    files = {
        "added": sorted(set(new_bundle.files) - set(old_files)),
        "removed": sorted(set(old_files) - set(new_bundle.files)),
        "changed": sorted(
            p for p in set(new_bundle.files) & set(old_files) if new_bundle.files[p] != old_files[p]
        ),
    }
    functions = {
        "added": sorted(set(new_app.functions) - old_functions),
        "removed": sorted(old_functions - set(new_app.functions)),
    }
    tables: dict[str, list[str]] = {"added": []}
    indexes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for name, definition in (new_app.schema.tables if new_app.schema else {}).items():
        meta = catalog.tables.get(name)
        if meta is None:
            tables["added"].append(name)
        existing = {
            i.name: i.fields
            for i in (catalog.indexes.get(meta.table_number, []) if meta else [])
            if i.name not in _BUILT_IN_INDEXES
        }
        wanted = {i.name: i.fields for i in definition.indexes}
        for index_name, fields in wanted.items():
            if index_name not in existing:
                indexes["added"].append(f"{name}.{index_name}")
            elif existing[index_name] != fields:
                indexes["changed"].append(f"{name}.{index_name}")
        indexes["removed"] += [f"{name}.{i}" for i in existing if i not in wanted]
    old_crons = current[1].crons if current else {}
    crons = {
        "added": sorted(set(new_app.crons) - set(old_crons)),
        "removed": sorted(set(old_crons) - set(new_app.crons)),
        "changed": sorted(
            name
            for name in set(new_app.crons) & set(old_crons)
            if _cron_shape(new_app.crons[name]) != _cron_shape(old_crons[name])
        ),
    }
    return {
        "files": files,
        "functions": functions,
        "tables": tables,
        "indexes": indexes,
        "crons": crons,
    }


def _cron_shape(job: CronJob) -> tuple[object, ...]:
    return (job.path, job.args, job.schedule.to_json())
