-- compare: *
-- q16: as q15 per channel and day, plus the largest 'HH:mm' of the group.
SELECT
    channel,
    to_char(datetime, '%Y-%m-%d') AS "day",
    MAX(to_char(datetime, '%H:%M')) AS "minute",
    COUNT(*) AS total_bids,
    COUNT(CASE WHEN price < 10000 THEN 1 END) AS rank1_bids,
    COUNT(CASE WHEN price >= 10000 AND price < 1000000 THEN 1 END) AS rank2_bids,
    COUNT(CASE WHEN price >= 1000000 THEN 1 END) AS rank3_bids,
    COUNT(DISTINCT bidder) AS total_bidders,
    COUNT(DISTINCT CASE WHEN price < 10000 THEN bidder END) AS rank1_bidders,
    COUNT(DISTINCT CASE WHEN price >= 10000 AND price < 1000000 THEN bidder END) AS rank2_bidders,
    COUNT(DISTINCT CASE WHEN price >= 1000000 THEN bidder END) AS rank3_bidders,
    COUNT(DISTINCT auction) AS total_auctions,
    COUNT(DISTINCT CASE WHEN price < 10000 THEN auction END) AS rank1_auctions,
    COUNT(DISTINCT CASE WHEN price >= 10000 AND price < 1000000 THEN auction END) AS rank2_auctions,
    COUNT(DISTINCT CASE WHEN price >= 1000000 THEN auction END) AS rank3_auctions
FROM bid
GROUP BY channel, to_char(datetime, '%Y-%m-%d')
