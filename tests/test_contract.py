import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pydantic import ValidationError

from popray.config import LabelConfig, RunConfig
from popray.configure import load_config
from popray.io.contract import FollowerRow, MediaRow, PostRow
from popray.io.schemas_export import stale_schemas

POST = {
    "profile_id": "brand",
    "post_id": "p1",
    "published_at": "2021-03-04T10:00:00",
    "likes": "10",
    "comments": "2",
    "post_type": "image",
}


def test_naive_timestamp_means_utc_and_aware_is_converted():
    naive = PostRow.model_validate(POST)
    assert naive.published_at == datetime(2021, 3, 4, 10, tzinfo=UTC)
    aware = PostRow.model_validate(POST | {"published_at": "2021-03-04T12:00:00+02:00"})
    assert aware.published_at == naive.published_at


def test_follower_date_is_midnight_utc():
    row = FollowerRow.model_validate({"profile_id": "b", "at": "2020-01-31", "followers": "5"})
    assert row.at == datetime(2020, 1, 31, tzinfo=UTC)
    with pytest.raises(ValidationError):
        FollowerRow.model_validate({"profile_id": "b", "at": "2020-01-31", "followers": "0"})


def test_hashtags_derived_from_caption_unless_given():
    assert PostRow.model_validate(POST | {"caption": "hi #a #b_c x#d"}).n_hashtags == 3
    assert PostRow.model_validate(POST | {"caption": "#a", "n_hashtags": 7}).n_hashtags == 7
    assert PostRow.model_validate(POST).n_hashtags is None


@pytest.mark.parametrize(
    "field,value",
    [
        ("likes", "-1"),
        ("likes", "1.5"),
        ("post_type", "reel"),
        ("published_at", "2021-02-30"),
        ("profile_id", "brand' OR 1=1 --"),
        ("post_id", ""),
    ],
)
def test_bad_post_values_are_rejected(field, value):
    with pytest.raises(ValidationError) as err:
        PostRow.model_validate(POST | {field: value})
    assert err.value.errors()[0]["loc"][0] == field


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="extra"):
        PostRow.model_validate(POST | {"shares": 3})


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x.jpg", "media/../../x.jpg", "C:/x.jpg", "media\\x.jpg", "."]
)
def test_media_path_must_stay_inside(path):
    row = {"media_id": "m", "post_id": "p", "position": 0, "media_type": "image", "path": path}
    with pytest.raises(ValidationError):
        MediaRow.model_validate(row)


def test_label_config_validates_and_normalises():
    assert LabelConfig(k=[3, 2, 3]).k == [2, 3]
    with pytest.raises(ValidationError):
        LabelConfig(k=[1])
    with pytest.raises(ValidationError):
        LabelConfig(window_days=0)
    with pytest.raises(ValidationError):
        LabelConfig(windows_days=10)


def test_config_file_paths_relative_to_file(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('input_dir = "data"\nout_dir = "o"\n[label]\nk = [2]\nwindow_days = 28\n')
    loaded = load_config(cfg)
    assert loaded.input_dir == str(tmp_path / "data") and loaded.label.window_days == 28
    cfg.write_text('input_dir = "s3://bucket/exports/brand?region=eu-west-1"\n')
    assert load_config(cfg).input_dir == "s3://bucket/exports/brand?region=eu-west-1"
    cfg.write_text('input_dir = "data"\ntypo = 1\n')
    with pytest.raises(ValidationError, match="typo"):
        load_config(cfg)
    assert RunConfig(input_dir="x").label == LabelConfig()


def test_schema_files_are_in_sync_with_the_code():
    assert stale_schemas() == [], "run `popray schemas` and commit the result"


def test_a_bad_column_declaration_names_its_file(tmp_path, monkeypatch):
    from popray.io import tables

    doc = json.loads((tables.SCHEMA_DIR / "posts.json").read_text())
    doc["fields"][3]["type"] = "int65"
    (tmp_path / "posts.json").write_text(json.dumps(doc))
    monkeypatch.setattr(tables, "SCHEMA_DIR", tmp_path)
    tables.table_schema.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"posts\.json: bad column declaration.*'int65'"):
            tables.table_schema("posts")
    finally:
        monkeypatch.undo()
        tables.table_schema.cache_clear()
    assert tables.table_schema("posts").field("likes").type == pa.int64()


def test_conform_orders_casts_and_drops_extra_columns():
    from popray.io.tables import conform, table_schema

    row = {"media_id": "m", "reason": "logo", "source_row": 3, "extra": 1.5}
    table = pa.Table.from_pylist([dict(reversed(row.items()))])  # source_row: int64 here
    assert conform(table, "excluded").schema == table_schema("excluded")
    assert conform(table, "excluded").to_pylist() == [
        {"media_id": "m", "reason": "logo", "source_row": 3}
    ]
    with pytest.raises(ValueError, match="unknown output table 'nope'"):
        table_schema("nope")
