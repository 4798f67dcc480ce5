"""A real two-node Ray cluster on one machine with no shared file system (test helper).

The head is started with `ray start --head --num-cpus=0`, so nothing but drivers runs
there. The worker node is started inside its own mount namespace (`unshare --mount
--propagation private`) with empty tmpfs mounted over the folders it must not see: the
export, the work folder, `/tmp` and `~/.cache`. It shares the network with the head, so
it reaches the GCS and an S3 server on 127.0.0.1, as a cluster node reaches the head and
a bucket. Needs root (or CAP_SYS_ADMIN) for the mounts: `available()` says why not.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
WORKER_RESOURCE = "popray_worker_node"  # a task asking for it runs on the worker node


def available() -> str | None:
    """None when a private mount namespace with tmpfs mounts can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "t", "/mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot make a private mount namespace: {probe.stderr.strip()[:200]}"
    return None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def source_tree(target: Path) -> Path:
    """What `--working-dir .` uploads from a clean clone: the files git tracks or would."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and not rel.startswith((".whl", ".gpu", "build/")):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target / rel)
    return target


def upload(local: Path, uri: str):
    """Copy an export's regular files to storage at `uri` (object stores have no links)."""
    from popray.io.storage import Location

    loc = Location.parse(uri)
    for p in sorted(local.rglob("*")):
        if p.is_file() and not p.is_symlink():
            with loc.fs.open_output_stream(loc.path(p.relative_to(local).as_posix())) as s:
                s.write(p.read_bytes())
    return loc


def _node_ports(index: int) -> list[str]:
    """Every port a node opens, chosen free (nodes on one machine must not collide); node
    `index` (0: the head) gets its own range of worker ports."""
    names = [
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    ]
    ports = free_ports(len(names))
    low = 20000 + (os.getpid() % 100) * 300 + 100 * index
    return [f"--{n}={p}" for n, p in zip(names, ports, strict=True)] + [
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 99}",
    ]


@dataclass
class Cluster:
    address: str  # the job server, for `ray job submit --address`
    env: dict[str, str]
    hidden: list[Path]  # what the worker node cannot see
    gcs: str = ""  # host:port worker nodes join
    workers: list[subprocess.Popen] = field(default_factory=list)

    def add_worker(self, cpus: int = 2, attempts: int = 3) -> subprocess.Popen:
        """Another isolated worker node (as the first one); `kill_worker` takes it away.
        A `ray start` that exits at once (a port taken between choosing it and binding
        it) is tried again on new ports; its output is in the error when none joins."""
        for attempt in range(attempts):
            log = tempfile.TemporaryFile()  # noqa: SIM115 (open as long as the node runs)
            worker = _start_worker(
                self.gcs, self.env, self.hidden, cpus, len(self.workers) + 1, log
            )
            alive = 2 + sum(w.poll() is None for w in self.workers)  # head, workers, this
            try:
                _wait_for_worker(self.address, worker, want=alive)
            except RuntimeError:
                exited = worker.poll() is not None
                if exited and attempt + 1 < attempts:
                    continue
                self.workers.append(worker)  # still stopped at the end if it is running
                raise RuntimeError(f"the worker node did not join: {_tail(log)}") from None
            self.workers.append(worker)
            return worker
        raise AssertionError("unreachable")

    def node_ids(self) -> set[str]:
        """The ids of the nodes alive now."""
        with urllib.request.urlopen(f"{self.address}/nodes?view=summary", timeout=10) as r:
            nodes = json.load(r)["data"]["summary"]
        return {n["raylet"]["nodeId"] for n in nodes if n.get("raylet", {}).get("state") == "ALIVE"}

    def tasks_on(self, job_id: str, node_id: str) -> int:
        """How many of the job's tasks (actor tasks included) were placed on `node_id`
        (Ray's state API)."""
        ray_job = self.info(job_id)["job_id"]
        query = f"limit=10000&filter_keys=job_id&filter_predicates=%3D&filter_values={ray_job}"
        with urllib.request.urlopen(f"{self.address}/api/v0/tasks?{query}", timeout=30) as r:
            tasks = json.load(r)["data"]["result"]["result"]
        return sum(t.get("node_id") == node_id for t in tasks)

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL a worker node's processes, as when its machine is lost."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)

    def _job(self, *args: str, timeout: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RAY, "job", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def submit(self, working_dir: Path, *entrypoint: str, timeout: int = 900, env_vars=None):
        """`ray job submit` of `entrypoint`; returns the CompletedProcess (output: the job's)."""
        return self._job(*self._submit(working_dir, env_vars), "--", *entrypoint, timeout=timeout)

    def start(self, working_dir: Path, *entrypoint: str, env_vars=None) -> str:
        """Submit `entrypoint` without waiting for it; returns the job's id."""
        module = next((a for a in entrypoint if a.startswith("jobs.")), "job")
        job_id = f"{module.replace('.', '-')}-{os.getpid()}-{time.monotonic_ns()}"
        args = [*self._submit(working_dir, env_vars), "--no-wait", f"--submission-id={job_id}"]
        done = self._job(*args, "--", *entrypoint, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return job_id

    def _submit(self, working_dir: Path, env_vars) -> list[str]:
        runtime_env = {"env_vars": env_vars or {}}
        return [
            "submit",
            f"--address={self.address}",
            f"--working-dir={working_dir}",
            f"--runtime-env-json={json.dumps(runtime_env)}",
        ]

    def info(self, job_id: str) -> dict:
        """The job server's record of the job: status, driver_info (node, pid), ..."""
        with urllib.request.urlopen(f"{self.address}/api/jobs/{job_id}", timeout=30) as r:
            return json.loads(r.read())

    def status(self, job_id: str) -> str:
        """The job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
        return self.info(job_id)["status"]

    def kill_driver(self, job_id: str) -> None:
        """SIGKILL the job's driver process (on the head, this machine): no clean-up runs,
        as when its machine dies; the job then fails."""
        os.kill(int(self.info(job_id)["driver_info"]["pid"]), signal.SIGKILL)
        deadline = time.monotonic() + 120
        while self.status(job_id) in ("PENDING", "RUNNING") and time.monotonic() < deadline:
            time.sleep(1)

    def logs(self, job_id: str) -> str:
        return self._job("logs", f"--address={self.address}", job_id, timeout=60).stdout


def _private_mounts(masks: list[Path], keep: list[Path]) -> str:
    """Shell commands (run inside the new mount namespace) that put an empty tmpfs over
    each of `masks`, then bind back those of `keep` (the checkout and its venv: the
    software a node has installed, not data) that a mask would hide, e.g. a clone in /tmp.
    The keepers are held on a private tmpfs at /mnt, so nothing changes outside."""
    hidden_keep = [k for k in keep if any(k == m or k.is_relative_to(m) for m in masks)]
    hidden_keep = [
        k for k in hidden_keep if not any(k.is_relative_to(o) and k != o for o in hidden_keep)
    ]
    q = shlex.quote
    steps = ["mount -t tmpfs popray-keep /mnt"] if hidden_keep else []
    for i, k in enumerate(hidden_keep):
        steps += [f"mkdir /mnt/k{i}", f"mount --bind {q(str(k))} /mnt/k{i}"]
    steps += [f"mount -t tmpfs popray-private {q(str(m))}" for m in masks]
    for i, k in enumerate(hidden_keep):
        steps += [f"mkdir -p {q(str(k))}", f"mount --bind /mnt/k{i} {q(str(k))}"]
    return " && ".join(steps)


def _wait_http(
    url: str, proc: subprocess.Popen, what: str, timeout: float = 120, log: Path | None = None
) -> None:
    """Wait for `url` to answer; when `proc` exits first (or the time is up), fail with
    the end of its output (`log`), so that a cluster that did not start says why."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                said = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{said}") from None
            time.sleep(1)


@contextmanager
def two_nodes(hidden: list[Path], worker_cpus: int = 2) -> Iterator[Cluster]:
    """Start the head (no CPUs) and the isolated worker; stop both on exit."""
    gcs, dash, client = free_ports(3)
    env = os.environ | {
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        # the head checks each node every second (default 3 s) and marks it dead after 5
        # failed checks: a lost node is seen in ~5 s, not ~15 s; a busy but live raylet
        # still answers, each check waiting up to 10 s
        "RAY_health_check_period_ms": "1000",
    }
    head_temp = Path("/tmp") / f"popray-h{os.getpid()}"  # Ray wants a short socket path
    head_cmd = [
        RAY,
        "start",
        "--head",
        "--block",
        "--num-cpus=0",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}",
        f"--temp-dir={head_temp}",
        *_node_ports(0),
    ]
    procs: list[subprocess.Popen] = []
    cluster = None
    head_log = Path(tempfile.mkdtemp(prefix="popray-head-")) / "ray-start.log"
    try:
        with head_log.open("w") as out:  # the child keeps its own copy of the descriptor
            head = subprocess.Popen(
                head_cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(head)
        address = f"http://127.0.0.1:{dash}"
        _wait_http(f"{address}/api/version", head, "the Ray head", log=head_log)
        cluster = Cluster(address=address, env=env, hidden=hidden, gcs=f"127.0.0.1:{gcs}")
        procs.append(cluster.add_worker(worker_cpus))
        yield cluster
    finally:
        procs += [w for w in (cluster.workers if cluster else []) if w not in procs]
        for proc in reversed(procs):  # `ray start --block` stops its processes on SIGTERM
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:  # a few seconds to stop cleanly; the cluster is thrown away
            try:
                proc.wait(timeout=4)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        shutil.rmtree(head_temp, ignore_errors=True)
        shutil.rmtree(head_log.parent, ignore_errors=True)


def _tail(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def _start_worker(
    gcs: str, env: dict[str, str], hidden: list[Path], cpus: int, index: int, log
) -> subprocess.Popen:
    """`ray start` of a worker node inside a private mount namespace, with tmpfs over
    `hidden`, /tmp and ~/.cache: it sees none of the driver machine's files there."""
    home_cache = Path.home() / ".cache"
    home_cache.mkdir(exist_ok=True)
    masks = [*hidden, Path("/tmp"), home_cache]
    mounts = _private_mounts(masks, keep=[REPO, Path(sys.prefix).resolve()])
    worker_cmd = [
        RAY,
        "start",
        "--block",
        f"--address={gcs}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        f"--resources={json.dumps({WORKER_RESOURCE: 1000})}",
        "--temp-dir=/tmp/ray-worker",  # its own /tmp: the same path for every worker
        *_node_ports(index),
    ]
    script = f"{mounts} && exec {shlex.join(worker_cmd)}"
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_worker(
    address: str, worker: subprocess.Popen, want: int = 2, timeout: float = 120
) -> None:
    """Until the head's node list shows `want` nodes alive (the head and the workers)."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{address}/nodes?view=summary", timeout=5) as r:
                nodes = json.load(r)["data"]["summary"]
            if sum(n.get("raylet", {}).get("state") == "ALIVE" for n in nodes) >= want:
                return
        except (OSError, KeyError, ValueError):
            pass
        if time.time() > deadline or worker.poll() is not None:
            raise RuntimeError("the worker node did not join the cluster")
        time.sleep(1)
