"""Learning popularity from the embeddings: the training sets (`dataset`; the rows read
by `embedding_read` into `object_rows`), folds (`folds`) and walk-forward windows
(`timelines`, `walkforward`), the models (`models`, `gru`) and one training (`fit`), what
the grid trains (`cells`) and reuses (`units`), one trial (`trials`) and the grid on Ray
Tune (`tune`), metrics (`evaluate`, `baselines`, `ranking`, `scores`, `metrics_parallel`,
`metrics_text`), the cross-profile models (`pooled`, `pooled_folds`, `pooled_text`,
`pooled_keep`) and the final models (`final`). The stage that chains them is
`popray.train`."""
