-- compare: *
-- q1: price times 0.908 as DECIMAL(23, 3), computed exactly in decimal arithmetic.
SELECT
    auction,
    bidder,
    CAST(CAST(price AS DECIMAL(19, 0)) * CAST('0.908' AS DECIMAL(4, 3)) AS DECIMAL(23, 3)) AS price,
    datetime,
    extra
FROM bid
