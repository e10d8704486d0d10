-- compare: *
-- q22: SPLIT_INDEX(url, '/', i) is the i-th piece from 0, empty pieces kept, NULL when the url
-- has fewer than i + 1 pieces (i.e. fewer than i slashes); split_part counts from 1 and returns
-- '' out of range, hence the guard.
SELECT
    auction, bidder, price, channel,
    CASE WHEN length(url) - length(replace(url, '/', '')) >= 3 THEN split_part(url, '/', 4) END AS dir1,
    CASE WHEN length(url) - length(replace(url, '/', '')) >= 4 THEN split_part(url, '/', 5) END AS dir2,
    CASE WHEN length(url) - length(replace(url, '/', '')) >= 5 THEN split_part(url, '/', 6) END AS dir3
FROM bid
