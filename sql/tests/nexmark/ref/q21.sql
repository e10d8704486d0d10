-- compare: *
-- q21: REGEXP_EXTRACT(url, p, 2) is capture group 2 of the first match, NULL without a match:
-- regexp_match returns the capture groups as a list (1-based).
SELECT
    auction, bidder, price, channel,
    CASE
        WHEN lower(channel) = 'apple' THEN '0'
        WHEN lower(channel) = 'google' THEN '1'
        WHEN lower(channel) = 'facebook' THEN '2'
        WHEN lower(channel) = 'baidu' THEN '3'
        ELSE array_element(regexp_match(url, '(&|^)channel_id=([^&]*)'), 2)
    END AS channel_id
FROM bid
WHERE array_element(regexp_match(url, '(&|^)channel_id=([^&]*)'), 2) IS NOT NULL
   OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')
