-- The grid cells (profile, k, model, protocol) whose trials are taken over from the
-- published run (reused_trials: the rows of reusable_trials.sql).
SELECT DISTINCT profile_id, k, model, protocol FROM reused_trials;
