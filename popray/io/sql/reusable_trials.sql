-- The published trials a run takes over (popray.units): those of each (profile, k,
-- model, protocol) whose unit fingerprint is unchanged and that hold every seed asked
-- for. current_units: (profile_id, k, unit) of this run; old_trials: the published part.
WITH matched AS (
    SELECT t.*
    FROM old_trials t
    JOIN current_units c ON t.profile_id = c.profile_id AND t.k = c.k AND t.unit = c.unit
    WHERE list_contains($seeds, t.seed) AND list_contains($protocols, t.protocol)
),
complete AS (
    SELECT profile_id, k, model, protocol
    FROM matched
    GROUP BY profile_id, k, model, protocol
    HAVING count(DISTINCT seed) = $n_seeds
)
SELECT m.*
FROM matched m
JOIN complete c USING (profile_id, k, model, protocol)
ORDER BY m.protocol, m.model, m.k, m.seed, m.profile_id, m.fold, m.cut_at
