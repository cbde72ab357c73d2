"""An app's source as data: what ``syncline deploy`` sends and a cluster stores.

A bundle is every ``.py`` file of the app directory (function modules, private
helpers, ``schema.py``, ``auth_config.py``, ``crons.py``) by relative path. A
node that loads a bundle writes it to a directory named by its digest and loads
that directory as it would the original, so the code runs exactly as it did
where it was written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from syncline._errors import ConfigError
from syncline.app._loader import _SKIPPED_DIRS, App, load_app

MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_FILES = 2000


@dataclass(frozen=True)
class AppBundle:
    files: dict[str, str]
    """Source text by POSIX path relative to the app directory."""

    @classmethod
    def from_directory(cls, directory: Path) -> AppBundle:
        directory = directory.resolve()
        if not directory.is_dir():
            raise ConfigError(f"app directory {directory} does not exist")
        files: dict[str, str] = {}
        for file in sorted(directory.rglob("*.py")):
            relative = file.relative_to(directory)
            if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
                continue
            files[relative.as_posix()] = file.read_text(encoding="utf-8")
        return cls.checked(files)

    @classmethod
    def checked(cls, files: object) -> AppBundle:
        """A bundle from untrusted data; ConfigError names what is wrong."""
        if not isinstance(files, dict) or not files:
            raise ConfigError("an app bundle must map at least one file path to its source")
        if len(files) > MAX_FILES:
            raise ConfigError(f"an app bundle may hold at most {MAX_FILES} files")
        size = 0
        for path, source in files.items():
            if not isinstance(path, str) or not isinstance(source, str):
                raise ConfigError("an app bundle maps file paths (strings) to sources (strings)")
            pure = PurePosixPath(path)
            if (
                pure.is_absolute()
                or pure.suffix != ".py"
                or any(part in ("", ".", "..") for part in pure.parts)
                or pure.as_posix() != path  # "a/./b.py", "a//b.py"
                or "\\" in path
            ):
                raise ConfigError(f"bundle path {path!r} must be a relative path to a .py file")
            size += len(source.encode())
        if size > MAX_BUNDLE_BYTES:
            raise ConfigError(f"the app's sources exceed {MAX_BUNDLE_BYTES} bytes")
        return cls(dict(sorted(files.items())))

    @property
    def digest(self) -> str:
        """A hash of every path and source: equal bundles, equal digests."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(self.files, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AppBundle:
        try:
            return cls.checked(json.loads(text))
        except ValueError as exc:
            raise ConfigError("an app bundle must be a JSON object") from exc

    def load(self, cache_dir: Path) -> App:
        """Write the sources under ``cache_dir/<digest>`` (once) and load them."""
        target = cache_dir / self.digest
        if not target.is_dir():
            staging = cache_dir / f".{self.digest}.partial"
            for path, source in self.files.items():
                file = staging / path
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(source, encoding="utf-8")
            staging.replace(target)
        return load_app(target)
