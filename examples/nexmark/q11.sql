-- Nexmark q11: user sessions (not in the original suite).
-- Bids per bidder per session, a session ending after 10 seconds without a bid: a SESSION
-- window. Flink's suite writes this with the legacy GROUP BY SESSION(...) / SESSION_START /
-- SESSION_END syntax; here it is the equivalent SESSION window TVF (Flink 1.19+), whose
-- window_start / window_end are the same values.

CREATE TABLE nexmark_q11 (
  bidder BIGINT,
  bid_count BIGINT,
  starttime TIMESTAMP(3),
  endtime TIMESTAMP(3)
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q11
SELECT
    bidder,
    count(*) as bid_count,
    window_start as starttime,
    window_end as endtime
FROM TABLE(
        SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
