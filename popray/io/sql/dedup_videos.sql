-- Videos to compare for near-duplicates: length and frame rate, and where the thumbnail
-- embedding lies (the index of the part file in $files, the row in that file); Ray
-- tasks read the vectors themselves (dedup.run_dedup). sha256 and preprocess say which
-- vector it is (dedup's units).
-- Inputs: views media, posts; the part files of embeddings_video ($files).
-- Parameters: $backbone, $files.
WITH e AS (
    SELECT media_id, sha256, preprocess, duration_s, fps,
           list_position($files, filename) - 1 AS file, file_row_number AS row
    FROM read_parquet($files, filename = true, file_row_number = true)
    WHERE backbone = $backbone
)
SELECT m.profile_id, m.media_id, epoch_us(p.published_at) AS t,
       p.post_type <> 'carousel' AS single, e.sha256, e.preprocess, e.duration_s, e.fps,
       e.file, e.row
FROM e
JOIN media m USING (media_id)
JOIN posts p USING (post_id)
ORDER BY m.profile_id, m.media_id
