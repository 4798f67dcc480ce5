"""popray on a real Ray head: started with `ray start --head` on loopback in a temporary
directory, the job submitted with `ray job submit --working-dir`, as on a cluster."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from multinode import free_ports, source_tree

from popray import store

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_the_job_runs_under_ray_job_submit_on_a_real_head(tiny_input, tmp_path):
    gcs, dash, agent, agent_grpc, env_agent, metrics, client = free_ports(7)
    env = os.environ | {
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    temp = Path("/tmp") / f"popray-head-{os.getpid()}"  # Ray wants a short socket path
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={env_agent}",
            f"--metrics-export-port={metrics}",
            f"--ray-client-server-port={client}",
            "--num-cpus=2",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:  # the job server answers once the head is up
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and head.poll() is None, "the Ray head did not start"
                time.sleep(1)
        work = source_tree(tmp_path / "src")
        out = tmp_path / "out"
        job = subprocess.run(
            [
                RAY,
                "job",
                "submit",
                f"--address={address}",
                f"--working-dir={work}",
                "--",
                "python",
                "-m",
                "jobs.run",
                "--input",
                str(tiny_input),
                "--out",
                str(out),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        assert (out / "report" / "index.html").is_file()
        con = store.connect(out)
        n = con.sql("SELECT count(*) FROM trials").fetchall()[0][0]
        con.close()
        assert n > 0
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its processes
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def test_cluster_yaml_is_a_valid_launcher_config_with_auth_and_a_private_dashboard():
    """Ray's own schema check (what `ray up` runs first), and the safety choices."""
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = (REPO / "cluster.yaml").read_text()
    config = prepare_config(yaml.safe_load(raw))
    validate_config(config)
    assert {"head.cpu", "worker.gpu", "worker.cpu"} <= set(config["available_node_types"])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"][1:])
    assert any("ray_token" in target for target in config["file_mounts"])
    setup = " ".join(config["setup_commands"])
    assert "uv pip sync" in setup and "requirements.lock" in setup  # the tested versions
    assert "--no-deps -e ~/popray" in setup
