-- Quick start, step 1: one million Nexmark auction events, generated as Flink's Nexmark suite
-- generates them (event times 10,000 events per second apart, so 100 seconds of auctions),
-- of which the bids go into topic `bids` of the embedded store, one JSON record each.
--
--   rstreams topic create bids --queues 4
--   rstreams run examples/quickstart/bids_to_topic.sql

-- Four generator subtasks, one per queue of the topic: subtask s appends to queue s, so each
-- queue holds its bids in time order, and the reader's per-queue watermarks stay exact.
-- (Keying the records by auction, 'key.fields' = 'auction', would interleave the subtasks'
-- bids in every queue, out of order by however far one subtask runs ahead of another.)
SET 'parallelism.default' = '4';

CREATE TABLE nexmark (
  event_type INT,
  bid ROW<
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel VARCHAR,
    url VARCHAR,
    `dateTime` TIMESTAMP(3),
    extra VARCHAR>
) WITH (
  'connector' = 'nexmark',
  'first-event.rate' = '10000',
  'next-event.rate' = '10000',
  'events.num' = '1000000'
);

CREATE TABLE bids_topic (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  date_time TIMESTAMP(3)
) WITH (
  'connector' = 'queue',
  'topic' = 'bids'
);

INSERT INTO bids_topic
SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.`dateTime`
FROM nexmark
WHERE event_type = 2;
