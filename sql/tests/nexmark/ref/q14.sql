-- compare: *
-- q14: the price filter 0.908 * price in (1e6, 5e7) is 908 * price in (1e9, 5e10), exactly.
-- count_char(extra, 'c') counts the character (Flink's UDF returns 0 for a NULL string).
SELECT
    auction,
    bidder,
    CAST(CAST(price AS DECIMAL(19, 0)) * CAST('0.908' AS DECIMAL(4, 3)) AS DECIMAL(23, 3)) AS price,
    CASE
        WHEN date_part('hour', datetime) >= 8 AND date_part('hour', datetime) <= 18 THEN 'dayTime'
        WHEN date_part('hour', datetime) <= 6 OR date_part('hour', datetime) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidtimetype,
    datetime,
    extra,
    CAST(COALESCE(length(extra) - length(replace(extra, 'c', '')), 0) AS BIGINT) AS c_counts
FROM bid
WHERE price * 908 > 1000000000 AND price * 908 < 50000000000
