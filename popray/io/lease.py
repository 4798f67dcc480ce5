"""One writer per work folder on object storage: a lease object renewed by conditional PUTs.

    <work_dir>/LOCK    {"holder": "`popray run`, pid 4242 on head-1", "ttl_s": 600, ...}

A local `--out` has `store.exclusive` (a kernel `flock`, released however the holder
dies). Object storage has no such thing, and two heads (a nightly schedule overlapping a
manual rerun, a retried Kubernetes job) could otherwise write one prefix at once. On S3
the lease is built on conditional writes (AWS S3 since 2024, MinIO, moto):

- **take**: `PutObject(If-None-Match: *)` creates LOCK only when no one holds it;
- **renew**: every `renew_s` the holder rewrites LOCK with `If-Match: <its ETag>`; a 412
  means someone else took the lease, and the holder stops before it publishes (`check`);
- **expire**: a holder that died (SIGKILL, lost node) stops renewing; once LOCK is older
  than `ttl_s` by the *server's* clock (its `Date` header against the object's
  `Last-Modified`, so the hosts' clocks do not matter), the next run takes it over with
  `If-Match: <the stale ETag>`: of two runs that both saw it stale, exactly one wins;
- **release**: `DeleteObject(If-Match: <its ETag>)`, so a lease someone else took is
  never deleted.

What it does not protect against: a holder that stalls for longer than `ttl_s` (a
suspended VM, a partitioned network) and then resumes writes until its next renewal or
its `check` finds the lease gone. popray checks right before it publishes, and the
publication itself is one PUT of CURRENT, so the window is one renewal period of work
files, never a mix in the published run, but it is not a fencing token: storage does not
refuse a stale holder's writes. `file://` work folders use `store.exclusive` (flock) on
the mounted path, which holds only where the mount's `flock` works across hosts.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from popray.errors import LeaseLost, LockedError, StorageError
from popray.io import store
from popray.io.storage import Location

LEASE_NAME = "LOCK"
TTL_S = 600.0  # POPRAY_LEASE_TTL_S overrides: how long a dead holder blocks the next run
RENEW_S = 60.0  # at most; a quarter of the ttl when that is shorter


def _s3_client(uri: str):
    """A boto3 S3 client for `uri`'s endpoint, from the same query pyarrow reads
    (endpoint_override, scheme, region, access_key, secret_key, session_token)."""
    import boto3

    query = {k: v[-1] for k, v in parse_qs(urlsplit(uri).query).items()}
    endpoint = query.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=query.get("region"),
        aws_access_key_id=query.get("access_key"),
        aws_secret_access_key=query.get("secret_key"),
        aws_session_token=query.get("session_token"),
    )


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3Lease:
    """The lease on `location`'s LOCK object; `take` it, then `check` before publishing."""

    def __init__(self, location: Location, what: str, ttl_s: float, renew_s: float):
        parts = urlsplit(location.uri)
        self.location = location
        self.bucket = parts.netloc
        self.key = f"{parts.path.strip('/')}/{LEASE_NAME}".lstrip("/")
        self.ttl_s, self.renew_s = ttl_s, renew_s
        self.holder = f"`popray {what}`, pid {os.getpid()} on {socket.gethostname()}"
        self.client = _s3_client(location.uri)
        self.etag: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        now = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        return json.dumps({"holder": self.holder, "renewed": now, "ttl_s": self.ttl_s}).encode()

    def _put(self, **condition: str) -> str:
        reply = self.client.put_object(
            Bucket=self.bucket, Key=self.key, Body=self._body(), **condition
        )
        return reply["ETag"]

    def take(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.location.display(LEASE_NAME)
        try:
            try:
                self.etag = self._put(IfNoneMatch="*")
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
                self.etag = self._take_over()
        except ClientError as exc:
            if _code(exc) == "NotImplemented":
                raise StorageError(
                    f"{where}: this object store refuses conditional writes (If-None-Match), "
                    "which popray's writer lease needs; use a work folder on this machine "
                    "(--out DIR --publish-to s3://...)"
                ) from exc
            raise StorageError(f"{where}: cannot take the writer lease: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{where}: cannot take the writer lease: {exc}") from exc
        self._renewer = threading.Thread(target=self._renew, name="popray-lease", daemon=True)
        self._renewer.start()

    def _take_over(self) -> str:
        """LOCK exists: take it if its holder stopped renewing `ttl_s` ago, else refuse."""
        from botocore.exceptions import ClientError

        try:
            held = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _code(exc) != "NoSuchKey":
                raise
            return self._put(IfNoneMatch="*")  # released in between
        server_now = parsedate_to_datetime(held["ResponseMetadata"]["HTTPHeaders"]["date"])
        age = (server_now - held["LastModified"]).total_seconds()
        info = json.loads(held["Body"].read() or b"{}")
        ttl = float(info.get("ttl_s", self.ttl_s))
        where = self.location.display()
        if age < ttl:
            raise LockedError(
                f"{where} is being written by another popray run "
                f"({info.get('holder', 'unknown holder')}, lease renewed {age:.0f} s ago); "
                "wait for it to finish, or write to another --out. If that run died, its "
                f"lease expires in {ttl - age:.0f} s and the next run takes it over"
            )
        try:
            return self._put(IfMatch=held["ETag"])
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                raise LockedError(
                    f"{where}: another popray run took over the expired writer lease just now"
                ) from exc
            raise

    def _renew(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        last = datetime.now(UTC)
        while not self._stop.wait(self.renew_s):
            try:
                self.etag = self._put(IfMatch=self.etag)
                last = datetime.now(UTC)
            except ClientError as exc:
                if _code(exc) in ("PreconditionFailed", "NoSuchKey"):
                    self.lost = "another run took over the lease"
                    return
            except BotoCoreError:
                pass  # storage unreachable for now: retried at the next period
            if (datetime.now(UTC) - last).total_seconds() > self.ttl_s:
                self.lost = f"the lease could not be renewed for {self.ttl_s:.0f} s"
                return

    def check(self) -> None:
        """Raise LeaseLost when this run no longer holds the lease (call before publishing)."""
        if self.lost:
            raise LeaseLost(
                f"{self.location.display()}: this run lost its writer lease ({self.lost}); "
                "nothing was published from it"
            )

    def release(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.etag is None or self.lost:
            return
        # only our own lease (If-Match our ETag); taken over, or storage unreachable: it
        # expires after ttl_s
        with suppress(ClientError, BotoCoreError):
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)


class _FlockLease:
    """A `file://` work folder: the local writer lock on the mounted path."""

    def check(self) -> None:
        return None


def supported(location: Location) -> bool:
    """Whether `location` can hold a writer lease (s3://, file://, a local folder)."""
    return location.is_local_path or urlsplit(location.uri).scheme in ("s3", "file")


@contextmanager
def exclusive(
    location: Location, what: str, ttl_s: float | None = None
) -> Iterator[S3Lease | _FlockLease]:
    """Hold the writer lease of the work folder `location` while the body runs; a second
    writer refuses at once (LockedError) with who holds it and when it expires."""
    ttl = ttl_s or float(os.environ.get("POPRAY_LEASE_TTL_S") or TTL_S)
    scheme = urlsplit(location.uri).scheme
    if location.is_local_path or scheme == "file":
        with store.exclusive(Path(location.path()), what):
            yield _FlockLease()
        return
    if scheme != "s3":
        raise StorageError(
            f"{location.display()}: a work folder on {scheme}:// is not supported (its writer "
            "lease needs conditional writes, implemented for s3:// only); use s3://, or a "
            "work folder on this machine with --publish-to"
        )
    lease = S3Lease(location, what, ttl, min(RENEW_S, ttl / 4))
    lease.take()
    try:
        yield lease
    finally:
        lease.release()
