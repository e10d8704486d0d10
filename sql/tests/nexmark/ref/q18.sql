-- compare: auction, bidder, datetime
-- q18: last bid per (bidder, auction) by dateTime. Bids tied on dateTime may leave a different
-- row, so only the key and the dateTime are compared.
SELECT auction, bidder, price, channel, url, datetime, extra
FROM (
    SELECT
        auction, bidder, price, channel, url, datetime, extra,
        ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY datetime DESC) AS rank_number
    FROM bid
) t
WHERE rank_number <= 1
