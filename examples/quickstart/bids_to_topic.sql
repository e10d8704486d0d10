-- Quick start, step 1: one million Nexmark auction events, generated as Flink's Nexmark suite
-- generates them (event times 10,000 events per second apart, so 100 seconds of auctions),
-- of which the bids go into topic `bids` of the embedded store, one JSON record each.
--
--   rstreams topic create bids --queues 4
--   rstreams run examples/quickstart/bids_to_topic.sql

SET 'parallelism.default' = '2';

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
  'topic' = 'bids',
  'key.fields' = 'auction'
);

INSERT INTO bids_topic
SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.`dateTime`
FROM nexmark
WHERE event_type = 2;
