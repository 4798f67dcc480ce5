import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from popray.io import store
from popray.io.tables import embeddings_video_schema


def test_row_groups_of_wide_rows_stay_small(tmp_path, monkeypatch):
    """A table of wide rows (video frame embeddings, ~80 KB a row) is written in row
    groups under ROW_GROUP_BYTES, so a reader streaming it holds one group, not the
    table; narrow rows keep large groups."""
    monkeypatch.setattr(store, "ROW_GROUP_BYTES", 1 << 16)
    n, width = 40, 64
    frames = np.random.default_rng(0).normal(size=(n, 15, width)).astype(np.float32)
    flat = pa.array(frames.reshape(-1))
    nested = pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, width), 15)
    one = pa.FixedSizeListArray.from_arrays(pa.array(frames[:, 0].reshape(-1)), width)
    times = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 15, np.float32)), 15)
    schema = embeddings_video_schema(width)
    table = pa.table(
        {
            "media_id": [f"v{i}" for i in range(n)],
            "sha256": ["0" * 64] * n,
            "backbone": ["b"] * n,
            "preprocess": ["p"] * n,
            "duration_s": np.full(n, 5.0),
            "fps": np.full(n, 30.0),
            "n_frames_total": np.full(n, 150),
            "frame_times_s": times,
            "frames": nested,
            "pooled": one,
            "thumbnail": one,
            "thumbnail_source": ["file"] * n,
        }
    ).cast(schema)
    path = store.write_table(tmp_path, "embeddings_video", table, part="b", schema=schema)
    meta = pq.ParquetFile(path).metadata
    row_bytes = table.nbytes / n
    assert meta.num_row_groups > 1
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert all(rows * row_bytes <= 1 << 16 for rows in groups)
    assert pq.read_table(path).equals(table)
    narrow = pa.table({"media_id": [f"m{i}" for i in range(1000)]})
    assert store._group_rows(narrow) >= 1000
