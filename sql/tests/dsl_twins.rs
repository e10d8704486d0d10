//! Each DSL pipeline next to its SQL twin on the same input: the same results and the same
//! topology (the EXPLAIN text of both, qualifiers aside).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use streams_core::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use streams_core::connector::{Connector, ConnectorRegistry, OptionSpec, Options};
use streams_core::datafusion::functions_aggregate::count::count_all;
use streams_core::datafusion::functions_aggregate::expr_fn::{max, sum};
use streams_core::datafusion::prelude::{col, lit};
use streams_core::dsl::{Hop, Pipeline, Session, Tumble};
use streams_core::testing::{CollectSink, MemorySource};
use streams_core::{SinkFactory, SourceFactory};
use streams_sql::{Outcome, SqlEngine};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

/// 3 000 bids on 7 auctions, one every 11 ms, slightly out of order; dealt to 3 splits.
fn source() -> Arc<MemorySource> {
    let mut x = 11u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut s = MemorySource::new("bid", schema());
    for split in 0..3 {
        let batches: Vec<RecordBatch> = (0..10)
            .map(|b| {
                let n = 100;
                let base = (split * 10 + b) * n;
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(
                            (0..n).map(|_| (next() % 7) as i64),
                        )),
                        Arc::new(Int64Array::from_iter_values(
                            (0..n).map(|_| (next() % 900) as i64),
                        )),
                        Arc::new(TimestampMillisecondArray::from_iter_values((0..n).map(
                            |i| 1_700_000_000_000 + (base + i) * 11 + (next() % 40) as i64,
                        ))),
                    ],
                )
                .unwrap()
            })
            .collect();
        s = s.with_batches(batches);
    }
    Arc::new(s)
}

/// `'connector' = 'twin'`: the shared source, and sinks that keep rows.
#[derive(Debug)]
struct Twin {
    source: Arc<MemorySource>,
    sink: Arc<CollectSink>,
}

impl Connector for Twin {
    fn name(&self) -> &str {
        "twin"
    }
    fn options(&self) -> &[OptionSpec] {
        &[]
    }
    fn source(
        &self,
        _: &str,
        _: SchemaRef,
        _: &Options,
    ) -> streams_core::Result<Arc<dyn SourceFactory>> {
        Ok(self.source.clone())
    }
    fn sink(
        &self,
        _: &str,
        _: SchemaRef,
        _: &Options,
    ) -> streams_core::Result<Arc<dyn SinkFactory>> {
        Ok(self.sink.clone())
    }
}

const DDL: &str = "
CREATE TABLE bid (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '0.1' SECOND) WITH ('connector' = 'twin');
SET 'parallelism.default' = '2';
";

/// Runs the SQL script's INSERT; its EXPLAIN and its applied rows.
async fn sql(source: &Arc<MemorySource>, sink_ddl: &str, insert: &str) -> (String, Vec<String>) {
    let sink = Arc::new(CollectSink::new());
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::new(Twin {
        source: source.clone(),
        sink: sink.clone(),
    }));
    let mut engine = SqlEngine::new(registry);
    engine.execute(DDL).unwrap();
    engine.execute(sink_ddl).unwrap();
    let Some(Outcome::Insert(plan)) = engine.execute(insert).unwrap().pop() else {
        panic!("not an INSERT");
    };
    let explain = engine.explain_plan(&plan).unwrap();
    let graph = engine.compile(&[plan]).unwrap();
    streams_core::runtime::launch(graph, &engine.config().runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    (explain, rows(&sink))
}

fn rows(sink: &CollectSink) -> Vec<String> {
    let batches = sink.batches();
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let table = streams_core::changelog::materialize(&first.schema(), &batches).unwrap();
    // Cells only: the twins may name their columns differently.
    let opts = streams_core::arrow::util::display::FormatOptions::default();
    let cells: Vec<_> = table
        .columns()
        .iter()
        .map(|c| {
            streams_core::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()
        })
        .collect();
    let mut lines: Vec<String> = (0..table.num_rows())
        .map(|r| {
            cells
                .iter()
                .map(|c| c.value(r).to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    lines.sort();
    lines
}

/// The topology part of an EXPLAIN.
fn topology(explain: &str) -> String {
    explain.split("topology:\n").nth(1).unwrap().to_string()
}

async fn dsl(p: &Pipeline, sink: &CollectSink) -> (String, Vec<String>) {
    let explain = p.explain().unwrap();
    p.execute().unwrap().wait().await.unwrap();
    (explain, rows(sink))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_window_aggregate() {
    let source = source();
    let (sql_explain, sql_rows) = sql(
        &source,
        "CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT, volume BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT window_start, window_end, auction, COUNT(*) AS bids, SUM(price) AS volume \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '5' SECOND)) WHERE price > 100 \
         GROUP BY window_start, window_end, auction",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    p.source("bid", source.clone())
        .unwrap()
        .event_time("ts", Duration::from_millis(100))
        .unwrap()
        .filter(col("price").gt(lit(100)))
        .unwrap()
        .key_by([col("auction")])
        .window(Tumble::of(Duration::from_secs(5)))
        .aggregate([count_all().alias("bids"), sum(col("price")).alias("volume")])
        .unwrap()
        .select([
            col("window_start"),
            col("window_end"),
            col("auction"),
            col("bids"),
            col("volume"),
        ])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    let (dsl_explain, dsl_rows) = dsl(&p, &sink).await;
    assert!(!sql_rows.is_empty());
    assert_eq!(dsl_rows, sql_rows);
    assert_eq!(
        topology(&dsl_explain),
        topology(&sql_explain),
        "DSL:\n{dsl_explain}\nSQL:\n{sql_explain}"
    );
}

/// Asserts the twins agree, and that there was something to agree on.
fn same(sql: (String, Vec<String>), dsl: (String, Vec<String>)) {
    assert!(!sql.1.is_empty(), "the SQL twin produced nothing");
    assert_eq!(dsl.1, sql.1, "results differ");
    assert_eq!(
        topology(&dsl.0),
        topology(&sql.0),
        "DSL:\n{}\nSQL:\n{}",
        dsl.0,
        sql.0
    );
}

/// `bid` joined with itself, as `l` and `r`, on the auction.
fn self_join(p: &Pipeline, source: &Arc<MemorySource>) -> streams_core::dsl::JoinBuilder {
    let left = bids(p, source).alias("l").unwrap();
    let right = bids(p, source).alias("r").unwrap();
    left.join(right).on(col("l.auction"), col("r.auction"))
}

/// Writes a self-join's `l.auction, l.price AS a, r.price AS b` to `sink`.
fn pairs_into(joined: streams_core::dsl::Stream, sink: &Arc<CollectSink>) {
    joined
        .select([
            col("l.auction"),
            col("l.price").alias("a"),
            col("r.price").alias("b"),
        ])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
}

fn bids(p: &Pipeline, source: &Arc<MemorySource>) -> streams_core::dsl::Stream {
    p.source("bid", source.clone())
        .unwrap()
        .event_time("ts", Duration::from_millis(100))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_and_session_windows() {
    let source = source();
    let sql_twin = sql(
        &source,
        "CREATE TABLE out (window_end TIMESTAMP(3), auction BIGINT, top BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT window_end, auction, MAX(price) AS top \
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)) \
         GROUP BY window_start, window_end, auction",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    bids(&p, &source)
        .key_by([col("auction")])
        .window(Hop::of(Duration::from_secs(6), Duration::from_secs(2)))
        .aggregate([max(col("price")).alias("top")])
        .unwrap()
        .select([col("window_end"), col("auction"), col("top")])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    same(sql_twin, dsl(&p, &sink).await);

    let sql_twin = sql(
        &source,
        "CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), auction BIGINT, bids BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT window_start, window_end, auction, COUNT(*) AS bids \
         FROM TABLE(SESSION(TABLE bid PARTITION BY auction, DESCRIPTOR(ts), INTERVAL '0.05' SECOND)) \
         GROUP BY window_start, window_end, auction",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    bids(&p, &source)
        .key_by([col("auction")])
        .window(Session::with_gap(Duration::from_millis(50)))
        .aggregate([count_all().alias("bids")])
        .unwrap()
        .select([
            col("window_start"),
            col("window_end"),
            col("auction"),
            col("bids"),
        ])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    same(sql_twin, dsl(&p, &sink).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_aggregate_is_an_update_stream_in_both() {
    let source = source();
    let sql_twin = sql(
        &source,
        "CREATE TABLE out (auction BIGINT, bids BIGINT, top BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid \
         WHERE price % 2 = 0 GROUP BY auction",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    bids(&p, &source)
        .filter((col("price") % lit(2)).eq(lit(0)))
        .unwrap()
        .key_by([col("auction")])
        .aggregate([count_all().alias("bids"), max(col("price")).alias("top")])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    same(sql_twin, dsl(&p, &sink).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_window_joins() {
    let source = source();
    let sql_twin = sql(
        &source,
        "CREATE TABLE out (auction BIGINT, a BIGINT, b BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT l.auction, l.price, r.price FROM bid l JOIN bid r \
         ON l.auction = r.auction AND l.ts BETWEEN r.ts - INTERVAL '0.03' SECOND AND r.ts \
         WHERE l.price < r.price",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    let joined = self_join(&p, &source)
        .filter(col("l.price").lt(col("r.price")))
        .within(Duration::ZERO, Duration::from_millis(30))
        .unwrap();
    pairs_into(joined, &sink);
    same(sql_twin, dsl(&p, &sink).await);

    let sql_twin = sql(
        &source,
        "CREATE TABLE out (auction BIGINT, a BIGINT, b BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT l.auction, l.price, r.price \
         FROM (SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND))) l \
         JOIN (SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '1' SECOND))) r \
         ON l.auction = r.auction AND l.window_start = r.window_start AND l.window_end = r.window_end \
         WHERE l.price + 850 < r.price",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    let joined = self_join(&p, &source)
        .filter((col("l.price") + lit(850i64)).lt(col("r.price")))
        .window(Tumble::of(Duration::from_secs(1)))
        .unwrap();
    pairs_into(joined, &sink);
    same(sql_twin, dsl(&p, &sink).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_and_branches() {
    let source = source();
    let sql_twin = sql(
        &source,
        "CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT auction, price FROM bid WHERE price < 50 \
         UNION ALL SELECT auction, price FROM bid WHERE price > 850",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    let all = bids(&p, &source);
    let [cheap, dear]: [streams_core::dsl::Stream; 2] = all
        .branch([col("price").lt(lit(50)), col("price").gt(lit(850))])
        .unwrap()
        .try_into()
        .unwrap();
    cheap
        .select([col("auction"), col("price")])
        .unwrap()
        .union(dear.select([col("auction"), col("price")]).unwrap())
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    // SQL reads the table once per SELECT of the UNION; `branch` reads it once and filters
    // twice. Same rows, one source fewer: compare the rows only.
    let dsl_twin = dsl(&p, &sink).await;
    assert!(!sql_twin.1.is_empty());
    assert_eq!(dsl_twin.1, sql_twin.1);
}

/// `twice(x)`: a Rust UDF registered once, called from SQL and from the DSL.
fn twice() -> streams_core::datafusion::logical_expr::ScalarUDF {
    use streams_core::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        "twice",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let a = ColumnarValue::values_to_arrays(args)?;
            let x = streams_core::arrow::array::AsArray::as_primitive::<
                streams_core::arrow::datatypes::Int64Type,
            >(&a[0]);
            let out: Int64Array = x.iter().map(|v| v.map(|v| v * 2)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_catalog_and_one_set_of_functions() {
    let source = source();
    let sink = Arc::new(CollectSink::new());
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::new(Twin {
        source: source.clone(),
        sink: sink.clone(),
    }));
    let mut engine = SqlEngine::new(registry);
    engine.register_udf(twice()).unwrap();
    engine.execute(DDL).unwrap();
    engine
        .execute("CREATE TABLE out (auction BIGINT, bids BIGINT) WITH ('connector' = 'twin')")
        .unwrap();

    // The DSL reads the SQL table, calls the SQL session's UDF, and gives SQL a view.
    let p = Pipeline::new().parallelism(2);
    let dear = p
        .stream(engine.table("bid").unwrap())
        .filter(
            engine
                .udf("twice")
                .unwrap()
                .call(vec![col("price")])
                .gt(lit(1000)),
        )
        .unwrap();
    engine.register_view("dear", dear.plan().clone()).unwrap();
    let dsl_sink = Arc::new(CollectSink::new());
    dear.key_by([col("auction")])
        .window(Tumble::of(Duration::from_secs(5)))
        .aggregate([count_all().alias("bids")])
        .unwrap()
        .select([col("auction"), col("bids")])
        .unwrap()
        .sink("windows", dsl_sink.clone())
        .unwrap();

    let plans: Vec<_> = engine
        .execute("INSERT INTO out SELECT auction, COUNT(*) FROM dear GROUP BY auction")
        .unwrap()
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Insert(p) => Some(p),
            _ => None,
        })
        .collect();
    let graph = engine.compile(&plans).unwrap();
    streams_core::runtime::launch(graph, &engine.config().runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    p.execute().unwrap().wait().await.unwrap();

    // The view's rows, counted per auction, equal the DSL's windows summed per auction.
    let per_auction: std::collections::BTreeMap<String, i64> = rows(&sink)
        .iter()
        .map(|l| {
            let (a, n) = l.split_once(" | ").unwrap();
            (a.to_string(), n.parse().unwrap())
        })
        .collect();
    let mut summed = std::collections::BTreeMap::<String, i64>::new();
    for l in rows(&dsl_sink) {
        let (a, n) = l.split_once(" | ").unwrap();
        *summed.entry(a.to_string()).or_default() += n.parse::<i64>().unwrap();
    }
    assert!(!per_auction.is_empty());
    assert_eq!(per_auction, summed);
    let total: i64 = summed.values().sum();
    // Prices are 0..900, so twice(price) > 1000 keeps prices above 500.
    assert!(total > 1_000 && total < 2_000, "{total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_join_and_top_n() {
    let source = source();
    let sql_twin = sql(
        &source,
        "CREATE TABLE out (auction BIGINT, a BIGINT, b BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT l.auction, l.price, r.price FROM bid l JOIN bid r \
         ON l.auction = r.auction AND l.price + 880 < r.price",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    let joined = self_join(&p, &source)
        .filter((col("l.price") + lit(880i64)).lt(col("r.price")))
        .regular()
        .unwrap();
    pairs_into(joined, &sink);
    same(sql_twin, dsl(&p, &sink).await);

    let sql_twin = sql(
        &source,
        "CREATE TABLE out (auction BIGINT, price BIGINT, rn BIGINT) WITH ('connector' = 'twin')",
        "INSERT INTO out SELECT auction, price, rn FROM (SELECT auction, price, \
         ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid) WHERE rn <= 3",
    )
    .await;
    let sink = Arc::new(CollectSink::new());
    let p = Pipeline::new().parallelism(2);
    bids(&p, &source)
        .key_by([col("auction")])
        .top_n(vec![col("price").sort(false, true)], 3, "rn")
        .unwrap()
        .select([col("auction"), col("price"), col("rn")])
        .unwrap()
        .sink("out", sink.clone())
        .unwrap();
    same(sql_twin, dsl(&p, &sink).await);
}
