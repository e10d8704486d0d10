-- compare: *
-- q5: HOP(slide 2 s, size 10 s): each bid belongs to the 5 windows starting at its 2-second bin
-- start minus 0, 2, 4, 6 and 8 seconds. Per window, the auctions whose count is the maximum.
WITH windowed AS (
    SELECT
        b.auction,
        date_bin(INTERVAL '2 seconds', b.datetime, TIMESTAMP '1970-01-01 00:00:00') - o.back
            AS window_start
    FROM bid b
    CROSS JOIN (
        VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'),
               (INTERVAL '6 seconds'), (INTERVAL '8 seconds')
    ) AS o(back)
),
counts AS (
    SELECT
        auction,
        COUNT(*) AS num,
        window_start AS starttime,
        window_start + INTERVAL '10 seconds' AS endtime
    FROM windowed
    GROUP BY auction, window_start
),
maxes AS (
    SELECT MAX(num) AS maxn, starttime, endtime
    FROM counts
    GROUP BY starttime, endtime
)
SELECT c.auction, c.num
FROM counts c
JOIN maxes m
  ON c.starttime = m.starttime AND c.endtime = m.endtime AND c.num >= m.maxn
