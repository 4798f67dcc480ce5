"""embed_assemble.assemble: one part per (backbone, profile), rewritten only when that
profile's items change; rows found wherever they were staged or stored, never lost."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from popray.config import EmbedConfig
from popray.io import store
from popray.io.storage import Location
from popray.media.embed_assemble import assemble
from popray.media.embed_write import image_table, part_of, parts_of, schemas

CFG = EmbedConfig(views=1)
KEY, WIDTH, NAME, BACKBONE = "key", 4, "embeddings_image", "bb"


def _vector(sha: str) -> np.ndarray:
    """Each sha256's 2 views (image + 1 augmented), from the name: rows are checkable."""
    seed = int.from_bytes(sha.encode(), "little") % (1 << 32)
    return np.random.default_rng(seed).normal(size=(2, WIDTH)).astype(np.float32)


def _stage(staging: Location, folder: str, shas: list[str]) -> None:
    items = [{"media_id": f"first-{s}", "sha256": s, "embeddings": _vector(s)} for s in shas]
    where = staging.child(folder) if folder else staging
    where.fs.create_dir(where.path(), recursive=True)
    path = where.path(f"{len(where.files())}.parquet")
    pq.write_table(image_table(items, CFG, KEY, WIDTH), path)


def _assemble(out, staging, current, owner=None):
    schema = schemas(WIDTH)["image"]
    return assemble(out, NAME, BACKBONE, schema, KEY, staging, current, owner or {})


def _rows(out) -> dict[tuple[str, int], np.ndarray]:
    t = store.read_table(out, NAME).to_pylist()
    assert len({(r["media_id"], r["view"]) for r in t}) == len(t)  # no row twice
    return {(r["media_id"], r["view"]): np.array(r["embedding"]) for r in t}


def _check(out, current) -> None:
    rows = _rows(out)
    assert set(rows) == {(m, v) for m, _, _ in current for v in (0, 1)}
    for media_id, sha, _ in current:
        assert np.allclose(rows[(media_id, 0)], _vector(sha)[0])


def _location(path, by: str) -> Location:
    """Staging on this machine's disk (threads of the driver build the parts), or behind a
    URI, as object storage is (Ray tasks build them, the driver's files sent as bytes)."""
    return Location.parse(f"file://{path}" if by == "tasks" else path)


@pytest.mark.parametrize("by", ["threads", "tasks"])
def test_parts_per_profile_and_only_changed_ones_rewritten(tmp_path, by, ray_session):
    out = tmp_path / "out"
    staging = _location(tmp_path / "staging", by)
    a, b, c = (part_of(BACKBONE, p) for p in "abc")
    _stage(staging, a, ["s1", "s2"])
    _stage(staging, b, ["s3"])
    _stage(staging, c, ["s4"])
    current = [("m1", "s1", "a"), ("m2", "s2", "a"), ("m3", "s3", "b"), ("m4", "s4", "c")]
    owner = {"s1": a, "s2": a, "s3": b, "s4": c}
    done = _assemble(out, staging, current, owner)
    assert (done.written, done.kept, done.removed) == (3, 0, 0)
    assert sorted(parts_of(out, NAME, BACKBONE)) == sorted([a, b, c])
    _check(out, current)
    inode = {p: f.stat().st_ino for p, f in parts_of(out, NAME, BACKBONE).items()}

    # nightly: a new post on b; profile c leaves; new profile d reposts a's s1 (copied)
    night = _location(tmp_path / "night", by)
    _stage(night, b, ["s5"])
    current2 = [*current[:3], ("m5", "s5", "b"), ("m6", "s1", "d")]  # c gone, d copies s1
    done = _assemble(out, night, current2, {"s5": b})
    assert (done.written, done.kept, done.removed) == (2, 1, 1)  # b and d; a kept; c removed
    after = {p: f.stat().st_ino for p, f in parts_of(out, NAME, BACKBONE).items()}
    assert after[a] == inode[a] and after[b] != inode[b] and c not in after
    _check(out, current2)

    # unchanged: nothing written, nothing read from staging
    done = _assemble(out, None, current2)
    assert (done.written, done.kept, done.removed) == (0, 3, 0)
    assert {p: f.stat().st_ino for p, f in parts_of(out, NAME, BACKBONE).items()} == after


def test_the_single_part_of_older_runs_is_split_per_profile(tmp_path):
    out = tmp_path / "out"
    old = image_table(
        [
            {"media_id": m, "sha256": s, "embeddings": _vector(s)}
            for m, s in [("m1", "s1"), ("m2", "s2")]
        ],
        CFG,
        KEY,
        WIDTH,
    )
    store.write_table(out, NAME, old, part=BACKBONE, schema=schemas(WIDTH)["image"])
    current = [("m1", "s1", "a"), ("m2", "s2", "b")]
    done = _assemble(out, None, current)
    assert (done.written, done.removed) == (2, 1)
    assert sorted(parts_of(out, NAME, BACKBONE)) == sorted(part_of(BACKBONE, p) for p in "ab")
    _check(out, current)


def test_rows_found_nowhere_are_an_error_not_a_smaller_table(tmp_path):
    out = tmp_path / "out"
    staging = Location.parse(tmp_path / "staging")
    _stage(staging, part_of(BACKBONE, "a"), ["s1"])
    current = [("m1", "s1", "a"), ("m2", "s2", "a")]  # s2 staged nowhere
    with pytest.raises(RuntimeError, match="no embedding rows found for 1 item"):
        _assemble(
            out, staging, current, {"s1": part_of(BACKBONE, "a"), "s2": part_of(BACKBONE, "a")}
        )


def test_another_backbones_parts_are_left_alone(tmp_path):
    out = tmp_path / "out"
    staging = Location.parse(tmp_path / "staging")
    _stage(staging, part_of("bb.x", "a"), ["s1"])
    schema = schemas(WIDTH)["image"]
    assemble(
        out, NAME, "bb.x", schema, KEY, staging, [("m1", "s1", "a")], {"s1": part_of("bb.x", "a")}
    )
    done = _assemble(out, None, [])
    assert done.removed == 0 and len(parts_of(out, NAME, "bb.x")) == 1
