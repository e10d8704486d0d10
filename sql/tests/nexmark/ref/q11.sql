-- compare: *
-- q11: sessions per bidder with a 10-second gap. Flink merges session windows that touch
-- ([t, t + gap) windows intersect when start <= other.end, TimeWindow.intersects), so a bid
-- exactly 10 s after the previous one stays in the same session: a new session starts only when
-- datetime > previous datetime + gap. window_start = first bid, window_end = last bid + gap.
WITH flagged AS (
    SELECT
        bidder,
        datetime,
        CASE
            WHEN LAG(datetime) OVER (PARTITION BY bidder ORDER BY datetime) IS NULL THEN 1
            WHEN datetime > LAG(datetime) OVER (PARTITION BY bidder ORDER BY datetime)
                            + INTERVAL '10 seconds' THEN 1
            ELSE 0
        END AS new_session
    FROM bid
),
numbered AS (
    SELECT
        bidder,
        datetime,
        SUM(new_session) OVER (
            PARTITION BY bidder ORDER BY datetime
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS session_id
    FROM flagged
)
SELECT
    bidder,
    COUNT(*) AS bid_count,
    MIN(datetime) AS starttime,
    MAX(datetime) + INTERVAL '10 seconds' AS endtime
FROM numbered
GROUP BY bidder, session_id
