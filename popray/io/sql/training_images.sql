-- Training items for the image side: labelled, embedded, not excluded (never embedded),
-- not removed as a near-duplicate. Keys only: for each item, where the embeddings of its
-- views lie (the index of the part file in $files, the row in that file), view 0 first.
-- The caller streams the embeddings from the files in file order (dataset.load_dataset),
-- so no query holds, groups or sorts the 1280-float vectors.
-- Inputs: views labels, duplicates; the part files of embeddings_image ($files).
-- Only rows of the learnt label scheme that have a class.
-- Parameters: $k, $scheme, $backbone, $files.
WITH e AS (
    SELECT media_id, sha256, view,
           list_position($files, filename) - 1 AS file, file_row_number AS row
    FROM read_parquet($files, filename = true, file_row_number = true)
    WHERE backbone = $backbone
)
SELECT l.profile_id, l.media_id, any_value(e.sha256) AS sha256,
       l.class AS y,
       list(e.file ORDER BY e.view) AS files,
       list(e.row ORDER BY e.view) AS rows
FROM labels l
JOIN e USING (media_id)
WHERE l.k = $k AND l.scheme = $scheme AND l.class IS NOT NULL
  AND l.media_id NOT IN (
      SELECT media_id FROM duplicates WHERE NOT kept AND backbone = $backbone)
GROUP BY l.profile_id, l.media_id, y
ORDER BY l.profile_id, l.media_id
