-- compare: *
-- q4: Flink's AVG of a BIGINT is a BIGINT: the sum divided by the count, truncated (integer
-- division). Output columns are named as the sink's: id (the category) and final.
SELECT
    q.category AS id,
    CAST(SUM(q."final") / COUNT(q."final") AS BIGINT) AS "final"
FROM (
    SELECT MAX(b.price) AS "final", a.category
    FROM auction a
    JOIN bid b ON a.id = b.auction
    WHERE b.datetime BETWEEN a.datetime AND a.expires
    GROUP BY a.id, a.category
) q
GROUP BY q.category
