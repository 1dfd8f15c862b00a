"""A state root on a local folder or an object store (any pyarrow filesystem URI).

Writes are atomic per file: local files go through a temporary file and `os.replace`; object
stores replace an object in one PUT. Paths are built from validated segments only, so no
input can name a file outside the root.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from freshness.errors import StateError
from freshness.util.disk import is_no_space, no_space_message
from freshness.util.faults import fault_point

_FORBIDDEN_SEGMENTS = {"", ".", ".."}


def _check_segment(segment: str) -> str:
    if segment in _FORBIDDEN_SEGMENTS or "/" in segment or "\\" in segment or "\x00" in segment:
        raise StateError(f"unsafe state path segment {segment!r}: refusing to write outside root")
    return segment


def make_dirs(folder: Path) -> None:
    """Create a folder and its missing parents as 0o755 (never group/world-writable)."""
    if folder.is_dir():
        return
    make_dirs(folder.parent)
    try:
        os.mkdir(folder, 0o755)
    except FileExistsError:
        pass


def write_synced(path: str, data: bytes) -> None:
    """Create `path` (it must not exist) with `data`, flushed to disk; a failed write leaves
    no file behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


class StateStore:
    """Files under one root: a local path, `file://`, `s3://`, `gs://`, … URI."""

    def __init__(self, root: str | Path) -> None:
        root = str(root)
        self.uri = root
        if "://" in root:
            self.fs, self.base = pafs.FileSystem.from_uri(root)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
        else:
            self.fs, self.local = pafs.LocalFileSystem(), True
            self.base = str(Path(root).absolute())
        self.base = self.base.rstrip("/")

    def path(self, *segments: str) -> str:
        """Absolute path of a file under the root (segments validated)."""
        return "/".join([self.base, *(_check_segment(s) for s in segments)])

    def exists(self, *segments: str) -> bool:
        return self.fs.get_file_info(self.path(*segments)).type != pafs.FileType.NotFound

    def list_dir(self, *segments: str) -> list[str]:
        """Names directly under a folder ([] when it does not exist)."""
        info = self.fs.get_file_info(pafs.FileSelector(self.path(*segments), allow_not_found=True))
        return sorted(i.base_name for i in info)

    def list_files(self, *segments: str) -> list[str]:
        """Paths (relative, '/'-joined) of every file under a folder, recursively."""
        base = self.path(*segments)
        info = self.fs.get_file_info(pafs.FileSelector(base, recursive=True,
                                                       allow_not_found=True))
        return sorted(i.path[len(base) + 1:] for i in info if i.type == pafs.FileType.File)

    def delete_dir(self, *segments: str) -> None:
        """Remove a folder and everything under it (nothing when it does not exist)."""
        path = self.path(*segments)
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            self.fs.delete_dir(path)

    def write_bytes(self, data: bytes, *segments: str) -> None:
        """Write a file atomically: readers see the old or the new content, never a part."""
        target = self.path(*segments)
        if not self.local:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            make_dirs(Path(target).parent)
            write_synced(tmp, data)
            fault_point("state_write")
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            if is_no_space(exc):
                raise StateError(no_space_message(target, exc)) from exc
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_bytes(self, *segments: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""
        path = self.path(*segments)
        try:
            with self.fs.open_input_stream(path) as src:
                return src.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
                return None
            raise StateError(f"cannot read state file {path}: {exc}") from exc

    def write_json(self, value: dict, *segments: str) -> None:
        self.write_bytes(json.dumps(value, indent=2, sort_keys=True).encode(), *segments)

    def read_json(self, *segments: str) -> dict | None:
        """Parsed JSON, None when missing; a corrupt file raises StateError naming it."""
        raw = self.read_bytes(*segments)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise StateError(
                f"state file {self.path(*segments)} is corrupt ({exc}): run "
                "`freshness repair` to rebuild it from the index"
            ) from exc
        if not isinstance(value, dict):
            raise StateError(f"state file {self.path(*segments)} is not a JSON object")
        return value

    def write_table(self, table: pa.Table, *segments: str) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.write_bytes(buffer.getvalue(), *segments)

    def read_table(self, *segments: str) -> pa.Table | None:
        raw = self.read_bytes(*segments)
        if raw is None:
            return None
        try:
            return pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowInvalid, OSError) as exc:
            raise StateError(
                f"state file {self.path(*segments)} is corrupt ({exc}): run "
                "`freshness repair` to rebuild it from the index"
            ) from exc

    def delete_tree(self, *segments: str) -> None:
        """Delete a folder and everything under it (nothing when it is missing)."""
        path = self.path(*segments)
        try:
            self.fs.delete_dir(path)
        except FileNotFoundError:
            pass

    def delete(self, *segments: str) -> None:
        path = self.path(*segments)
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass
