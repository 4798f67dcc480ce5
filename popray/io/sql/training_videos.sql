-- Training items for the video side: labelled, embedded, not removed as near-duplicates.
-- Keys only: where each video's embedding row lies (the index of the part file in
-- $files, the row in that file); the caller streams frames and pooled vectors from the
-- files in file order (dataset.load_dataset).
-- Inputs: views labels, duplicates; the part files of embeddings_video ($files).
-- Only rows of the learnt label scheme that have a class.
-- Parameters: $k, $scheme, $backbone, $files.
WITH e AS (
    SELECT media_id, sha256,
           list_position($files, filename) - 1 AS file, file_row_number AS row
    FROM read_parquet($files, filename = true, file_row_number = true)
    WHERE backbone = $backbone
)
SELECT l.profile_id, l.media_id, e.sha256,
       l.class AS y,
       [e.file] AS files, [e.row] AS rows
FROM labels l
JOIN e USING (media_id)
WHERE l.k = $k AND l.scheme = $scheme AND l.class IS NOT NULL
  AND l.media_id NOT IN (
      SELECT media_id FROM duplicates WHERE NOT kept AND backbone = $backbone)
ORDER BY l.profile_id, l.media_id
