"""App bundles (what ``syncline deploy`` sends) and the changes a new version makes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncline._errors import ConfigError
from syncline.app import AppBundle, app_changes, load_app
from syncline.storage import Catalog, IndexMeta, TableMeta

SCHEMA = """
    from syncline import define_schema, define_table, v

    schema = define_schema({
        "notes": define_table({"body": v.string(), "tag": v.string()}).index("by_tag", ["tag"]),
    })
"""
NOTES = """
    from syncline import query
    from ._shared import LIMIT


    @query
    async def latest(ctx):
        return await ctx.db.query("notes").take(LIMIT)
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(textwrap.dedent(source))
    return directory


def test_a_bundle_holds_every_source_and_loads_like_the_directory(tmp_path: Path) -> None:
    app_dir = write(
        tmp_path / "app",
        {"schema.py": SCHEMA, "notes.py": NOTES, "_shared.py": "LIMIT = 5\n"},
    )
    write(app_dir, {"__pycache__/junk.py": "x", ".hidden/x.py": "x", "README.md": "no"})
    bundle = AppBundle.from_directory(app_dir)
    assert sorted(bundle.files) == ["_shared.py", "notes.py", "schema.py"]
    again = AppBundle.from_json(bundle.to_json())
    assert again == bundle and again.digest == bundle.digest
    loaded = again.load(tmp_path / "cache")
    assert loaded.directory == (tmp_path / "cache" / bundle.digest).resolve()
    assert set(loaded.functions) == set(load_app(app_dir).functions) == {"notes:latest"}
    assert again.load(tmp_path / "cache").functions.keys() == loaded.functions.keys()


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({}, "at least one file"),
        ([], "at least one file"),
        ({"../escape.py": ""}, "must be a relative path to a .py file"),
        ({"/abs.py": ""}, "must be a relative path to a .py file"),
        ({"notes.txt": ""}, "must be a relative path to a .py file"),
        ({"a/./b.py": ""}, "must be a relative path to a .py file"),
        ({"a.py": 5}, "maps file paths (strings) to sources (strings)"),
        ({"big.py": "x" * (16 * 1024 * 1024 + 1)}, "exceed"),
    ],
)
def test_bad_bundles_are_refused_naming_the_problem(files: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        AppBundle.checked(files)
    with pytest.raises(ConfigError, match="JSON object"):
        AppBundle.from_json("{not json")


CRONS = """
    from syncline import cron_jobs

    crons = cron_jobs()
    crons.interval("kept", "jobs:touch", seconds=60)
    crons.interval("retimed", "jobs:touch", seconds=60)
    crons.interval("dropped", "jobs:touch", seconds=60)
"""


TOUCH = """
    from syncline import internal_mutation

    @internal_mutation
    async def touch(ctx):
        return None
"""


def test_changes_name_files_functions_tables_indexes_and_crons(tmp_path: Path) -> None:
    old_dir = write(
        tmp_path / "old",
        {
            "schema.py": SCHEMA,
            "notes.py": NOTES,
            "_shared.py": "LIMIT = 5\n",
            "jobs.py": TOUCH,
            "crons.py": CRONS,
        },
    )
    new_schema = """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "notes": define_table({"body": v.string(), "tag": v.string()}).index(
                "by_tag", ["tag", "body"]
            ),
            "tags": define_table({"name": v.string()}).index("by_name", ["name"]),
        })
    """
    new_dir = write(
        tmp_path / "new",
        {
            "schema.py": new_schema,
            "notes.py": textwrap.dedent(NOTES).replace("from ._shared import", "LIMIT = 5  #")
            + "\n\n@query\nasync def count(ctx):\n    return 0\n",
            "tags.py": "from syncline import query\n",
            "jobs.py": TOUCH,
            "crons.py": CRONS.replace(
                '"retimed", "jobs:touch", seconds=60', '"retimed", "jobs:touch", seconds=90'
            ).replace(
                'crons.interval("dropped", "jobs:touch", seconds=60)',
                'crons.cron("new", "0 * * * *", "jobs:touch")',
            ),
        },
    )
    old = (AppBundle.from_directory(old_dir), load_app(old_dir))
    new = (AppBundle.from_directory(new_dir), load_app(new_dir))
    catalog = Catalog(
        tables={"notes": TableMeta(10001, "notes")},
        indexes={
            10001: [
                IndexMeta(1, 10001, "by_id", ("_id",)),
                IndexMeta(3, 10001, "by_tag", ("tag",)),
                IndexMeta(4, 10001, "by_old", ("body",)),
            ]
        },
    )
    assert app_changes(old, new, catalog) == {
        "files": {
            "added": ["tags.py"],
            "removed": ["_shared.py"],
            "changed": ["crons.py", "notes.py", "schema.py"],
        },
        "functions": {"added": ["notes:count"], "removed": []},
        "tables": {"added": ["tags"]},
        "indexes": {
            "added": ["tags.by_name"],
            "removed": ["notes.by_old"],
            "changed": ["notes.by_tag"],
        },
        "crons": {"added": ["new"], "removed": ["dropped"], "changed": ["retimed"]},
    }
    first = app_changes(None, old, Catalog())
    assert first["functions"]["added"] == ["jobs:touch", "notes:latest"]
    assert first["tables"]["added"] == ["notes"]
