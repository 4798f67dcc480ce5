"""cluster.yaml, the launcher file users start a cluster from. (The job itself is
submitted with `ray job submit` to a real two-node cluster in tests/test_multinode.py.)"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
