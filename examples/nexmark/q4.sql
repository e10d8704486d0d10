-- Nexmark q4: average price for a category.
-- Winning (highest) bid of each auction among bids placed while it was open, averaged per
-- category (AVG of BIGINT is a BIGINT in Flink). A regular join and two unbounded aggregates.
-- The sink's columns are named id and final, as in Flink's suite; they hold category and average.

CREATE TABLE nexmark_q4 (
  id BIGINT,
  final BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q4
SELECT
    Q.category,
    AVG(Q.final)
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
