"""Learning popularity from the embeddings: the training arrays (`dataset`), folds
(`folds`) and walk-forward windows (`timelines`, `walkforward`), the models (`models`,
`gru`) and one training (`fit`), what the grid trains (`cells`) and reuses (`units`), the
grid on Ray Tune (`tune`), metrics (`evaluate`, `scores`, `metrics_parallel`), the
cross-profile models (`pooled`, `pooled_keep`) and the final models (`final`).
The stage that chains them is `popray.train`."""
