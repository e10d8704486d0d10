-- compare: *
-- q17: Flink's AVG of a BIGINT is a BIGINT: sum / count, truncated (integer division).
SELECT
    auction,
    to_char(datetime, '%Y-%m-%d') AS "day",
    COUNT(*) AS total_bids,
    COUNT(CASE WHEN price < 10000 THEN 1 END) AS rank1_bids,
    COUNT(CASE WHEN price >= 10000 AND price < 1000000 THEN 1 END) AS rank2_bids,
    COUNT(CASE WHEN price >= 1000000 THEN 1 END) AS rank3_bids,
    MIN(price) AS min_price,
    MAX(price) AS max_price,
    CAST(SUM(price) / NULLIF(COUNT(price), 0) AS BIGINT) AS avg_price,
    SUM(price) AS sum_price
FROM bid
GROUP BY auction, to_char(datetime, '%Y-%m-%d')
