"""Content-addressed file storage: `put` a finished temp file under its SHA-256, `open` it back.

The filesystem implementation keeps `<root>/ab/cd/<sha256>` (root: `<data dir>/files`).
A file is moved into place with an atomic rename, so a reader never sees half a file, and the
same bytes are stored once however many records carry them.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from states.config import data_dir

_SHA = re.compile(r"[0-9a-f]{64}\Z")


class Storage(Protocol):
    """Where attachment bytes live, keyed by their SHA-256 (lower-case hex)."""

    def put(self, source: Path, sha256: str) -> None:
        """Take over the finished file `source` (removed afterwards) as `sha256`."""

    def open(self, sha256: str) -> BinaryIO:
        """Open the stored bytes for reading; FileNotFoundError if absent."""

    def exists(self, sha256: str) -> bool:
        """Return whether `sha256` is stored."""

    def scratch(self) -> Path:
        """A directory for temp files on the same filesystem (so `put` can rename)."""


class FileStorage:
    """Files under `root/ab/cd/<sha256>`, written by rename from `root/tmp`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def scratch(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, source: Path, sha256: str) -> None:
        target = self._path(sha256)
        if target.exists():
            source.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(source, 0o640)
        os.replace(source, target)  # atomic on one filesystem; the same bytes win either way

    def open(self, sha256: str) -> BinaryIO:
        return self._path(sha256).open("rb")

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()


def put_bytes(storage: Storage, data: bytes, sha256: str) -> None:
    """Store small bytes (a thumbnail) the same way: a temp file, then `put`."""
    fd, name = tempfile.mkstemp(dir=storage.scratch(), prefix="put-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    storage.put(Path(name), sha256)


def default_storage() -> FileStorage:
    """The storage of this deployment: `<data dir>/files` (`DANGJIAN_DATA_DIR`)."""
    return FileStorage(data_dir() / "files")
