"""popray's language-neutral contracts, shipped inside the package as `popray.schemas`.

- `inputs/*.schema.json`: JSON Schema of each input file's rows (generated from
  `popray.contract`; regenerate with `popray schemas`).
- `config.schema.json`: JSON Schema of the run configuration (from `popray.config`).
- `tables/*.json`: the Arrow schema of every output table (from `popray.tables`).
- `sql/*.sql`: the DuckDB SQL of the labelling stage; values are bound parameters.
"""
