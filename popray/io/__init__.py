"""Where the data live: the input contract (`contract`), reading and checking the input
rows (`rows`, `cross_checks`), the output tables and their schemas (`tables`), the DuckDB
views, named queries (`sql/`) and the writer lock (`store`), locations on disk or object
storage (`storage`), staging and atomic publication (`publish`), published runs on object
storage (`remote`) and their writer lease (`lease`)."""
