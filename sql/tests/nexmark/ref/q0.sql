-- compare: *
-- q0: every bid, unchanged.
SELECT auction, bidder, price, datetime, extra
FROM bid
