-- Ingest's checks across rows and files (popray/io/cross_checks.py), in DuckDB over the
-- validated input tables (`<input>_v`): which rows fail and why (a few, whose reasons are
-- then written in Python), and which rows are kept, in output order. {table}, {key},
-- {ids} and {out} are table and column names the module fills in (never input data).

-- name: later_duplicates
-- every row of {table} whose {key} an earlier row already has, with that first row
SELECT source_row, first_value(source_row) OVER w AS first, {ids}
FROM {table}
WINDOW w AS (PARTITION BY {key} ORDER BY source_row)
QUALIFY row_number() OVER w > 1
ORDER BY source_row;

-- name: keep_first
-- {table}'s first row of each {key}, as {out}
CREATE OR REPLACE TEMP TABLE {out} AS SELECT * FROM {table}
QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY source_row) = 1;

-- name: posts_without_followers
SELECT source_row, profile_id, post_id FROM posts_first
WHERE profile_id NOT IN (SELECT profile_id FROM followers_kept)
ORDER BY source_row;

-- name: keep_posts
CREATE TEMP TABLE posts_kept AS SELECT * FROM posts_first
WHERE profile_id IN (SELECT profile_id FROM followers_kept);

-- name: media_files
-- every file the kept media rows name (their paths and thumbnails)
SELECT path FROM media_kept UNION SELECT thumbnail_path FROM media_kept
WHERE thumbnail_path IS NOT NULL;

-- name: check_media
-- each kept media row against its post and its files (`problems`: rel -> why):
-- `problem` is the first check it fails; a single (non-carousel) post's second and
-- later media rows get single_n > 1
CREATE OR REPLACE TEMP TABLE media_checked AS
WITH joined AS (
    SELECT m.source_row, m.media_id, m.post_id, m.position, m.path, m.thumbnail_path,
           m.media_type, p.profile_id AS post_profile, p.post_type,
           p.post_id IS NULL AS orphan, pp.why AS path_why, tp.why AS thumb_why
    FROM media_kept m
    LEFT JOIN posts_kept p ON p.post_id = m.post_id
    LEFT JOIN problems pp ON pp.rel = m.path
    LEFT JOIN problems tp ON tp.rel = m.thumbnail_path
), first_checks AS (
    SELECT *, CASE
        WHEN orphan THEN 'orphan'
        WHEN path_why IS NOT NULL THEN 'path'
        WHEN thumb_why IS NOT NULL THEN 'thumbnail'
        WHEN post_type <> 'carousel' AND media_type <> post_type THEN 'type'
    END AS problem
    FROM joined
)
SELECT *,
    CASE WHEN problem IS NULL AND post_type <> 'carousel'
         THEN first_value(source_row) OVER single END AS single_row,
    CASE WHEN problem IS NULL AND post_type <> 'carousel'
         THEN row_number() OVER single END AS single_n
FROM first_checks
WINDOW single AS (
    PARTITION BY post_id, problem IS NULL AND post_type <> 'carousel' ORDER BY position);

-- name: media_failed
SELECT source_row, media_id, post_id, path, thumbnail_path, media_type, post_profile,
       post_type, problem, path_why, thumb_why, single_row
FROM media_checked
WHERE problem IS NOT NULL OR single_n > 1
ORDER BY post_id, position;

-- name: media_passed
SELECT source_row, post_profile FROM media_checked
WHERE problem IS NULL AND coalesce(single_n, 1) = 1
ORDER BY post_id, position;

-- name: posts_kept
SELECT source_row FROM posts_kept ORDER BY source_row;

-- name: followers_kept
SELECT source_row FROM followers_kept ORDER BY source_row;

-- name: exclusions_unknown
-- exclusions naming no valid media item (media_out: the media kept)
SELECT source_row, media_id FROM exclude_kept
WHERE media_id NOT IN (SELECT media_id FROM media_out)
ORDER BY source_row;

-- name: exclusions_kept
SELECT source_row FROM exclude_kept
WHERE media_id IN (SELECT media_id FROM media_out)
ORDER BY source_row;
