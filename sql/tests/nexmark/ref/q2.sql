-- compare: *
-- q2: Flink's MOD(a, b) takes the sign of a, as % does.
SELECT auction, price
FROM bid
WHERE auction % 123 = 0
