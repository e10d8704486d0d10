-- Quick start, step 2: the hottest items. For every 10-second window of bid time, the
-- auction(s) with the most bids (Nexmark q5, with tumbling windows), printed as each window
-- closes. Edit it and run it again: it reads topic `bids` from the start each time.
--
--   rstreams run examples/quickstart/hot_items.sql

SET 'parallelism.default' = '2';

CREATE TABLE bids (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  date_time TIMESTAMP(3),
  -- bids arrive at most 2 seconds out of order
  WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND
) WITH (
  'connector' = 'queue',
  'topic' = 'bids',
  -- read what the topic holds now, then stop; remove this line to follow the topic
  'scan.bounded.mode' = 'latest-offset'
);

CREATE TABLE hot_items (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  auction BIGINT,
  bids BIGINT,
  top_price BIGINT
) WITH (
  'connector' = 'print'
);

INSERT INTO hot_items
SELECT c.window_start, c.window_end, c.auction, c.bids, c.top_price
FROM (
  SELECT window_start, window_end, auction, COUNT(*) AS bids, MAX(price) AS top_price
  FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end, auction
) AS c
JOIN (
  SELECT window_start AS ws, window_end AS we, MAX(bids) AS most
  FROM (
    SELECT window_start, window_end, auction, COUNT(*) AS bids
    FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end, auction
  )
  GROUP BY window_start, window_end
) AS m
ON c.window_start = m.ws AND c.window_end = m.we AND c.bids = m.most;
