-- The `ratio_threshold` scheme (PicMe, shared/papers/picme-curation.txt), k = 2 only:
-- score = likes / followers_est; class 1 when the score is above $threshold, else 0.
-- Inputs: view items (label_items.sql). Parameters: $threshold (DOUBLE).
SELECT i.*, 'ratio_threshold' AS scheme, 2 AS k, i.likes / i.followers_est AS score,
       (i.likes / i.followers_est > $threshold)::INTEGER AS class,
       NULL::DOUBLE AS window_days, NULL::BIGINT AS reference_n,
       i.likes / i.followers_est AS rank_score
FROM items i
