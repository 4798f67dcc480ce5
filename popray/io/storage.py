"""Where popray reads its inputs: a local folder or object storage, through `pyarrow.fs`.

    Location.parse("data/demo")                       # this machine's disk only
    Location.parse("s3://bucket/exports/brand")       # every node of a cluster reaches it
    Location.parse("file:///mnt/shared/brand")        # a mount every node has at that path

A plain path is a folder on the machine that runs the driver; a cluster's other nodes
do not see it (`visible_to_cluster` is False), so a multi-node run refuses it. A URI
(`s3://`, `gs://`, `file://`, ...) names storage every node reaches: tasks resolve it
again on their own node, with that node's credentials (AWS_* variables, instance roles,
GOOGLE_APPLICATION_CREDENTIALS) or the URI's query (`?endpoint_override=host:port&
scheme=http&region=...`). Keep secrets out of the query: the URI is recorded in
`ingest.json` and printed in messages (`display` strips the query).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs

from popray.errors import MissingError, StorageError


def is_uri(value: str | Path) -> bool:
    """Whether `value` names storage by a scheme (s3://, gs://, file://) rather than a path."""
    return "://" in str(value)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of `uri`; a clear error for what pyarrow cannot open."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise StorageError(f"{uri}: not a storage URI pyarrow can open ({exc})") from exc
    return fs, path.rstrip("/")


@cache
def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """One filesystem object per URI and process (S3 clients are costly to make)."""
    return resolve(uri)


@dataclass(frozen=True)
class Location:
    """A folder: `uri` is an absolute local path or a URI (query included)."""

    uri: str

    @classmethod
    def parse(cls, value: str | Path) -> Location:
        """A location from what a user typed; a URI is checked to parse (not to exist)."""
        text = str(value)
        if is_uri(text):
            _, path = resolve(text)
            if not path.strip("/"):
                raise StorageError(f"{text}: names no bucket or folder")
            return cls(text)
        return cls(str(Path(text).resolve()))

    @property
    def is_local_path(self) -> bool:
        return not is_uri(self.uri)

    @property
    def visible_to_cluster(self) -> bool:
        """A URI is reached from every node; a plain path only on the driver's machine."""
        return not self.is_local_path

    @property
    def fs(self) -> pafs.FileSystem:
        return self._resolved()[0]

    def _resolved(self) -> tuple[pafs.FileSystem, str]:
        if self.is_local_path:
            return pafs.LocalFileSystem(), self.uri
        return _filesystem(self.uri)

    def path(self, rel: str = "") -> str:
        """The filesystem path of `rel` (a POSIX path relative to this folder; "" = itself;
        an absolute path stays itself, for local files named outside any export)."""
        base = self._resolved()[1]
        return str(PurePosixPath(base) / rel) if rel else base

    def display(self, rel: str = "") -> str:
        """For messages: the URI without its query (where credentials may hide)."""
        base = self.uri.split("?", 1)[0].rstrip("/")
        return f"{base}/{rel}" if rel else base

    def child(self, rel: str) -> Location:
        """The folder `rel` inside this one (a URI keeps its query: endpoint, region)."""
        if self.is_local_path:
            return Location(str(PurePosixPath(self.uri) / rel))
        base, _, query = self.uri.partition("?")
        joined = f"{base.rstrip('/')}/{rel.strip('/')}"
        return Location(f"{joined}?{query}" if query else joined)

    def names(self) -> list[str]:
        """The names directly inside this folder ([] when it does not exist)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(), allow_not_found=True))
        return sorted(info.base_name for info in infos)

    def files(self) -> list[str]:
        """Every file below this folder, as paths relative to it ([] when it does not exist)."""
        base = self.path()
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(
            info.path[len(base) :].lstrip("/") for info in infos if info.type == pafs.FileType.File
        )

    def delete(self) -> None:
        """Remove this folder and everything in it; nothing when it is not there."""
        if self.fs.get_file_info(self.path()).type != pafs.FileType.NotFound:
            self.fs.delete_dir(self.path())

    def infos(self, rels: list[str]) -> list[pafs.FileInfo]:
        """File info of each `rel`, in one call (one listing per prefix on object storage)."""
        if not rels:
            return []
        return self.fs.get_file_info([self.path(r) for r in rels])

    def read_bytes(self, rel: str) -> bytes:
        """The whole object; FileNotFoundError when it is not there."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "NoSuchKey" in str(exc):
                raise MissingError(self.display(rel)) from exc
            raise

    def check_folder(self) -> None:
        """Fail now, with a clear message, when the folder is missing or unreachable."""
        try:  # on object storage a prefix is a "directory" when objects lie under it
            info = self.fs.get_file_info(self.path())
        except OSError as exc:
            raise StorageError(f"{self.display()}: cannot be reached: {_first_line(exc)}") from exc
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{self.display()}: input folder not found")
        if info.type != pafs.FileType.Directory:
            raise StorageError(f"{self.display()}: not a folder")


def check_cluster_reach(location: Location, what: str, fix: str) -> None:
    """Refuse, before any task runs, a folder on this machine when the Ray cluster has other
    live nodes: their tasks would not see it (inputs "not found", results left on the node
    that wrote them). `what` names the folder in the message, `fix` the option to change."""
    import ray

    if location.visible_to_cluster or not ray.is_initialized():
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        raise StorageError(
            f"{what} {location.display()} is a folder on this machine, but the Ray cluster "
            f"has {len(nodes)} nodes that do not see it: use object storage "
            f"({fix} s3://bucket/prefix, gs://...), or, if every node mounts it at the same "
            f"path, name it as file://{location.uri}"
        )


LOCAL_FILES = Location("/")  # files named by absolute paths on this machine (predict, bench)


def put_file(path: str | Path):
    """A file of this machine in the Ray object store, for a task that may run on another
    node: its bytes as a uint8 array, which the task reads in place (`pa.BufferReader`),
    without the copy that a bytes object costs on `ray.get`."""
    import numpy as np
    import ray

    return ray.put(np.frombuffer(Path(path).read_bytes(), np.uint8))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
