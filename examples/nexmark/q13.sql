-- needs: filesystem connector
-- needs: processing time
-- Nexmark q13: bounded side input join (not in the original suite).
-- Each bid enriched with the value of key auction % 10000 from a CSV side input: a lookup join
-- at processing time (FOR SYSTEM_TIME AS OF). The side input holds the lines "i,i" for
-- i in 0..9999 (Flink's suite generates it with SideInputGenerator --num 10000).
-- Flink's suite declares side_input with the legacy 'connector.type' / 'connector.path' /
-- 'format.type' options; this is the same table with the current filesystem connector options.

CREATE TABLE side_input (
  key BIGINT,
  `value` VARCHAR
) WITH (
  'connector' = 'filesystem',
  'path' = 'file:///tmp/rstreams-nexmark/side_input.txt',
  'format' = 'csv'
);

CREATE TABLE nexmark_q13 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  `dateTime`  TIMESTAMP(3),
  `value`  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q13
SELECT
    B.auction,
    B.bidder,
    B.price,
    B.`dateTime`,
    S.`value`
FROM (SELECT *, PROCTIME() as p_time FROM bid) B
JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
ON mod(B.auction, 10000) = S.key;
