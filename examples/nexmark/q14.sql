-- Nexmark q14: calculation (not in the original suite).
-- Bids between 1M and 50M euros, with a day/night label from the hour of the bid and the
-- number of 'c' characters in extra (user-defined scalar function count_char).
-- Flink's suite registers the UDF with
--   CREATE FUNCTION count_char AS 'com.github.nexmark.flink.udf.CountChar';
-- rstreams cannot load a Java class: the runner registers count_char (a Rust UDF) instead.

CREATE TABLE nexmark_q14 (
    auction BIGINT,
    bidder BIGINT,
    price  DECIMAL(23, 3),
    bidTimeType VARCHAR,
    `dateTime` TIMESTAMP(3),
    extra VARCHAR,
    c_counts BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q14
SELECT
    auction,
    bidder,
    0.908 * price as price,
    CASE
        WHEN HOUR(`dateTime`) >= 8 AND HOUR(`dateTime`) <= 18 THEN 'dayTime'
        WHEN HOUR(`dateTime`) <= 6 OR HOUR(`dateTime`) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidTimeType,
    `dateTime`,
    extra,
    count_char(extra, 'c') AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
