-- Macros the label schemes share (created on the labelling connection first).
-- DuckDB's quantile_cont interpolates between two equal neighbours with rounding: the 10%
-- quantile of [a, a, b] comes out one ulp below a. An item whose score equals a would
-- then sit "above" a threshold it ties with, and ties are common (every media item of a
-- carousel shares its post's score). So a threshold within rounding of a score counts as
-- equal to it: relative 1e-12, plus 1e-15 absolute for scores at zero.
CREATE OR REPLACE MACRO ties(a, b) AS abs(a - b) <= 1e-12 * greatest(abs(a), abs(b)) + 1e-15;
-- an item's class: how many thresholds lie strictly below its score
CREATE OR REPLACE MACRO class_of(thresholds, score) AS
    len(list_filter(thresholds, lambda t: t < score AND NOT ties(t, score)))::INTEGER;
-- at or above / at or below a threshold, ties included
CREATE OR REPLACE MACRO at_least(score, t) AS score >= t OR ties(score, t);
CREATE OR REPLACE MACRO at_most(score, t) AS score <= t OR ties(score, t);
