-- compare: auction, price, rank_number
-- q19: top 10 bids per auction by price. Rank i always holds the i-th highest price, but among
-- bids tied on price the row kept may differ, so only auction, price and rank are compared.
SELECT auction, bidder, price, channel, url, datetime, extra, CAST(rank_number AS BIGINT) AS rank_number
FROM (
    SELECT
        auction, bidder, price, channel, url, datetime, extra,
        ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number
    FROM bid
) t
WHERE rank_number <= 10
