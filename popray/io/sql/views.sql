-- The DuckDB views of OUT/popray.duckdb (popray/io/store.py): one per table that some
-- stage has written, over its Parquet parts. {name} is a table name from the allow-list
-- popray.io.tables.SCHEMAS, never input data.

-- name: create
CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM read_parquet('tables/{name}/*.parquet');

-- name: drop
DROP VIEW IF EXISTS "{name}";

-- name: existing
SELECT view_name FROM duckdb_views();
