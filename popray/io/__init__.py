"""Where the data live: the input contract, the output tables and their schemas, the
DuckDB views and the writer lock (`store`), locations on disk or object storage
(`storage`), staging and atomic publication (`publish`), published runs on object storage
(`remote`) and their writer lease (`lease`)."""
