-- compare: *
-- q8: people and sellers per 10-second tumbling window (distinct, as the GROUP BYs), joined on
-- id = seller and the same window.
WITH p AS (
    SELECT DISTINCT
        id,
        name,
        date_bin(INTERVAL '10 seconds', datetime, TIMESTAMP '1970-01-01 00:00:00') AS starttime
    FROM person
),
a AS (
    SELECT DISTINCT
        seller,
        date_bin(INTERVAL '10 seconds', datetime, TIMESTAMP '1970-01-01 00:00:00') AS starttime
    FROM auction
)
SELECT p.id, p.name, p.starttime AS stime
FROM p
JOIN a ON p.id = a.seller AND p.starttime = a.starttime
