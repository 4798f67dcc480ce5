"""Published runs on object storage, through pyarrow's filesystems (s3://, gs://, file://).

    popray run --input export --out work --publish-to s3://bucket/popray/brand
    popray sql --out s3://bucket/popray/brand "SELECT * FROM metrics"

The job runs in the local folder `--out` as always (staged runs, atomic publication,
what a rerun reuses); once a run is published there it is uploaded:

    <uri>/runs/<id>/...   the run's files (tables/, popray.duckdb, models/, report/, ...)
    <uri>/CURRENT         {"run": "<id>", ...}: written last, in one PUT

An object PUT is atomic on S3 and GCS, so a reader that resolves CURRENT first reads a
complete run: an upload killed half-way is never named by it, and the previous run stays
where it was. The run before the current one is kept (a reader may still be in it);
older ones are deleted after the upload.

A machine whose `--out` has no published run yet (a fresh cluster node, a new CI
runner) first downloads the published run, so the nightly rerun decodes and embeds only
new media and resumes the grid instead of starting over.

Credentials and endpoints come from the usual places (AWS_* environment variables or
instance roles for S3; GOOGLE_APPLICATION_CREDENTIALS for GCS) or from the URI's query
(e.g. `?region=eu-west-1`, `?endpoint_override=host:port&scheme=http` for MinIO).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from popray.errors import MissingError, PoprayError, StorageError
from popray.io import store
from popray.io.publish import PUBLISHED_MARK, current, publish
from popray.io.storage import is_uri, resolve
from popray.io.tables import NAMES

POINTER = "CURRENT"


def published(uri: str) -> dict | None:
    """The CURRENT pointer of `uri` (None: nothing published there yet)."""
    fs, base = resolve(uri)
    pointer = f"{base}/{POINTER}"
    if fs.get_file_info(pointer).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(pointer) as stream:
        return json.loads(stream.read())


@dataclass(frozen=True)
class Pushed:
    """What `push` sent: files uploaded from this machine, and files the storage copied
    from the previous run itself (unchanged since, so no byte left this machine)."""

    run: str
    uploaded: int = 0
    uploaded_bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0

    def line(self) -> str:
        return (
            f"{self.uploaded} files uploaded ({self.uploaded_bytes / 1e6:,.1f} MB), "
            f"{self.copied} unchanged copied on the storage ({self.copied_bytes / 1e6:,.1f} MB)"
        )


TRANSFERS = 16  # files in flight at once (object stores serve many requests in parallel)


def push(out: Path, uri: str, check: Callable[[], None] | None = None) -> Pushed:
    """Upload the run published in `out` to `uri` and point CURRENT at it (last); remove
    remote runs older than the previous one. `check` runs right before CURRENT is written
    (the writer lease: it raises when this run lost it).

    A file that is still the previous run's own (a hard link to it: same inode; popray
    never rewrites a file in place) is copied on the storage from the previous remote
    run (S3 CopyObject), not uploaded again: a nightly run uploads what changed, not its
    unchanged embeddings and models."""
    run = current(out)
    if run is None:
        raise MissingError(f"{out}: no published run to upload")
    fs, base = resolve(uri)
    before = published(uri)
    previous = out / "runs" / before["run"] if before else None
    if previous is not None and not (previous / PUBLISHED_MARK).exists():
        previous = None  # another head published it: its files are not ours to compare
    files = sorted(p for p in run.rglob("*") if p.is_file())
    target = f"{base}/runs/{run.name}"
    fs.create_dir(target, recursive=True)
    for folder in sorted({p.parent.relative_to(run).as_posix() for p in files} - {"."}):
        fs.create_dir(f"{target}/{folder}", recursive=True)

    def send(path: Path) -> tuple[bool, int]:
        rel = path.relative_to(run).as_posix()
        size = path.stat().st_size
        if previous is not None and _same_file(path, previous / rel):
            try:
                fs.copy_file(f"{base}/runs/{previous.name}/{rel}", f"{target}/{rel}")
                return True, size
            except OSError:  # gone there, or too large for one server-side copy: upload
                pass
        pafs.copy_files(
            str(path),
            f"{target}/{rel}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
        return False, size

    with ThreadPoolExecutor(TRANSFERS) as pool:
        sent = list(pool.map(send, files))
    if check is not None:
        check()
    pointer = {"run": run.name, "published_at": datetime.now(UTC).isoformat(), "files": len(files)}
    with fs.open_output_stream(f"{base}/{POINTER}") as stream:
        stream.write(json.dumps(pointer).encode())
    keep = {run.name} | ({before["run"]} if before else set())
    runs = fs.get_file_info(pafs.FileSelector(f"{base}/runs", allow_not_found=True))
    for info in runs:
        if info.type == pafs.FileType.Directory and info.base_name not in keep:
            fs.delete_dir(info.path)
    copied = [size for was_copied, size in sent if was_copied]
    uploaded = [size for was_copied, size in sent if not was_copied]
    return Pushed(run.name, len(uploaded), sum(uploaded), len(copied), sum(copied))


def _same_file(path: Path, other: Path) -> bool:
    """Whether `other` is `path` itself (a hard link), not only equal bytes."""
    try:
        a, b = path.stat(), other.stat()
    except FileNotFoundError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def pull(uri: str, out: Path, refresh: bool = False) -> str | None:
    """When `out` has no published run, download the one published at `uri` and publish
    it locally (the next staged run starts from it). Returns its id, or None when there
    was nothing to do. `refresh`: `out` is only a copy of the work folder `uri` (the
    driver's scratch), so it also follows `uri` when that published another run since."""
    here = current(out)
    if here is not None and not refresh:
        return None
    pointer = published(uri)
    if pointer is None or (here is not None and here.name == pointer["run"]):
        return None
    fs, base = resolve(uri)
    run = out / "runs" / pointer["run"]
    run.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        f"{base}/runs/{pointer['run']}",
        str(run),
        source_filesystem=fs,
        destination_filesystem=pafs.LocalFileSystem(),
    )
    (run / PUBLISHED_MARK).touch()
    publish(out, run)
    return pointer["run"]


def open_outputs(out: str) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB over the output views: OUT's own, or the run published at a URI."""
    if not is_uri(out):
        return store.connect(Path(out))
    try:
        return connect(out)
    except PoprayError:
        raise
    except OSError as exc:  # storage unreachable, credentials refused, ...
        raise StorageError(f"{out}: {exc}") from exc


def connect(uri: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per table of the run published at `uri`, read
    through pyarrow (no DuckDB extension needed)."""
    pointer = published(uri)
    if pointer is None:
        raise MissingError(f"{uri}: nothing published here ({POINTER} missing)")
    fs, base = resolve(uri)
    tables = f"{base}/runs/{pointer['run']}/tables"
    con = duckdb.connect()
    for name in NAMES:  # identifiers only from this allow-list
        folder = f"{tables}/{name}"
        if fs.get_file_info(folder).type == pafs.FileType.Directory:
            con.register(name, pads.dataset(folder, filesystem=fs, format="parquet"))
    return con
