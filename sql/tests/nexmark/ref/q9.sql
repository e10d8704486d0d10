-- compare: id, itemname, description, initialbid, reserve, datetime, expires, seller, category, extra, auction, price, bid_datetime
-- q9: Top-1 bid per auction by price DESC, dateTime ASC. Bids tied on both may leave a
-- different bidder / bid_extra, so those two are not compared.
SELECT
    id, itemname, description, initialbid, reserve, datetime, expires, seller, category, extra,
    auction, bidder, price, bid_datetime, bid_extra
FROM (
    SELECT
        a.id, a.itemname, a.description, a.initialbid, a.reserve, a.datetime, a.expires,
        a.seller, a.category, a.extra,
        b.auction, b.bidder, b.price, b.datetime AS bid_datetime, b.extra AS bid_extra,
        ROW_NUMBER() OVER (PARTITION BY a.id ORDER BY b.price DESC, b.datetime ASC) AS rownum
    FROM auction a
    JOIN bid b ON a.id = b.auction
    WHERE b.datetime BETWEEN a.datetime AND a.expires
) t
WHERE rownum <= 1
