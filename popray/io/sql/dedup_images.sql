-- Images to compare for near-duplicates: every embedded image, with what decides which
-- duplicate is kept (single post beats carousel, then recency). Keys only: where its
-- view-0 embedding lies (the index of the part file in $files, the row in that file);
-- Ray tasks read the vectors themselves (dedup.run_dedup), so no query holds or sorts
-- the 1280-float vectors. sha256 and preprocess say which vector it is (dedup's units).
-- Inputs: views media, posts; the part files of embeddings_image ($files).
-- Parameters: $backbone, $files.
WITH e AS (
    SELECT media_id, sha256, preprocess,
           list_position($files, filename) - 1 AS file, file_row_number AS row
    FROM read_parquet($files, filename = true, file_row_number = true)
    WHERE backbone = $backbone AND view = 0
)
SELECT m.profile_id, m.media_id, epoch_us(p.published_at) AS t,
       p.post_type <> 'carousel' AS single, e.sha256, e.preprocess, e.file, e.row
FROM e
JOIN media m USING (media_id)
JOIN posts p USING (post_id)
ORDER BY m.profile_id, m.media_id
