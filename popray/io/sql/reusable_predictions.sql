-- The published predictions of the trials a run takes over (reused_trials, from
-- reusable_trials.sql): every validation item of those (profile, k, model, protocol,
-- seed)s, as published.
SELECT p.*
FROM old_predictions p
JOIN (SELECT DISTINCT profile_id, k, model, protocol, seed FROM reused_trials) r
    USING (profile_id, k, model, protocol, seed)
