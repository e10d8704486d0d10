-- compare: *
-- q7: per 10-second tumbling window, its maximum price and window_end; the bids with that price
-- and a dateTime in [window_end - 10 s, window_end] (both ends inclusive, as BETWEEN).
-- As Flink's query does, the sink's bidder column holds the price and its price column the bidder.
WITH b1 AS (
    SELECT
        MAX(price) AS maxprice,
        date_bin(INTERVAL '10 seconds', datetime, TIMESTAMP '1970-01-01 00:00:00')
            + INTERVAL '10 seconds' AS window_end
    FROM bid
    GROUP BY date_bin(INTERVAL '10 seconds', datetime, TIMESTAMP '1970-01-01 00:00:00')
)
SELECT
    b.auction AS auction,
    b.price AS bidder,
    b.bidder AS price,
    b.datetime AS datetime,
    b.extra AS extra
FROM bid b
JOIN b1 ON b.price = b1.maxprice
WHERE b.datetime BETWEEN b1.window_end - INTERVAL '10 seconds' AND b1.window_end
