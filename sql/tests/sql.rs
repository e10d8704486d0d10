//! SQL scripts end to end over in-memory test tables: DDL, window aggregates checked against
//! DataFusion batch SQL, EXPLAIN, and errors that say what and where.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use streams_core::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use streams_core::arrow::compute::concat_batches;
use streams_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use streams_core::arrow::util::pretty::pretty_format_batches;
use streams_core::connector::{Connector, ConnectorRegistry, OptionSpec, Options};
use streams_core::datafusion::datasource::MemTable;
use streams_core::datafusion::prelude::SessionContext;
use streams_core::testing::{CollectSink, MemorySource};
use streams_core::{SinkFactory, SourceFactory};
use streams_sql::{Outcome, SqlEngine};

/// `'connector' = 'test'`: sources replay named batches, sinks collect by table name.
#[derive(Debug, Default)]
struct TestConnector {
    data: Mutex<HashMap<String, Vec<RecordBatch>>>,
    sinks: Mutex<HashMap<String, Arc<CollectSink>>>,
}

const OPTIONS: &[OptionSpec] = &[OptionSpec {
    name: "data",
    required: false,
    doc: "name of the data set a source replays",
}];

impl Connector for TestConnector {
    fn name(&self) -> &str {
        "test"
    }
    fn options(&self) -> &[OptionSpec] {
        OPTIONS
    }
    fn source(
        &self,
        table: &str,
        schema: SchemaRef,
        options: &Options,
    ) -> streams_core::Result<Arc<dyn SourceFactory>> {
        let name = options.get("data").unwrap_or(table);
        let batches = self
            .data
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default();
        let mut source = MemorySource::new(table, Arc::clone(&schema));
        for split in batches.chunks(4) {
            source =
                source.with_batches(split.iter().map(|b| {
                    RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()).unwrap()
                }));
        }
        Ok(Arc::new(source))
    }
    fn sink(
        &self,
        table: &str,
        _schema: SchemaRef,
        _options: &Options,
    ) -> streams_core::Result<Arc<dyn SinkFactory>> {
        let sink = Arc::new(CollectSink::new());
        self.sinks
            .lock()
            .unwrap()
            .insert(table.to_string(), Arc::clone(&sink));
        Ok(sink)
    }
}

fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]))
}

fn bids() -> Vec<RecordBatch> {
    let mut x = 7u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..40)
        .map(|b| {
            let n = 100;
            let auction: Int64Array = (0..n).map(|_| (next() % 12) as i64).collect();
            let price: Int64Array = (0..n).map(|_| (next() % 500) as i64).collect();
            let ts: Vec<i64> = (0..n)
                .map(|i| 1_700_000_000_000 + (b * n + i) as i64 * 37 + (next() % 300) as i64)
                .collect();
            RecordBatch::try_new(
                bid_schema(),
                vec![
                    Arc::new(auction),
                    Arc::new(price),
                    Arc::new(TimestampMillisecondArray::from(ts)),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn engine() -> (SqlEngine, Arc<TestConnector>) {
    let connector = Arc::new(TestConnector::default());
    connector.data.lock().unwrap().insert("bids".into(), bids());
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::clone(&connector) as Arc<dyn Connector>);
    (SqlEngine::new(registry), connector)
}

const DDL: &str = "
CREATE TABLE bid (
  auction BIGINT,
  price BIGINT,
  date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'test', 'data' = 'bids');
CREATE TABLE out (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  auction BIGINT,
  bids BIGINT,
  total BIGINT
) WITH ('connector' = 'test');
";

/// DataFusion's answer for the count and sum per auction and 10-second TUMBLE window.
const TUMBLE_10S_REFERENCE: &str = "SELECT date_bin(INTERVAL '10 seconds', date_time) AS window_start, \
     date_bin(INTERVAL '10 seconds', date_time) + INTERVAL '10 seconds' AS window_end, \
     auction, COUNT(*) AS bids, SUM(price) AS total FROM bid GROUP BY 1, 2, 3";

async fn run(sql: &str) -> ((), RecordBatch) {
    ((), run_into(sql, "out").await)
}

async fn reference(sql: &str) -> String {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(bid_schema(), vec![bids()]).unwrap();
    ctx.register_table("bid", Arc::new(table)).unwrap();
    let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    sorted(&rows)
}

fn sorted(batches: &[RecordBatch]) -> String {
    let text = pretty_format_batches(batches).unwrap().to_string();
    // Cells only: column widths follow the headers, which differ between the two sides.
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join("|"))
        .collect();
    lines.sort_unstable();
    lines.join("\n")
}

#[tokio::test]
async fn tumble_window_aggregate_matches_datafusion() {
    let (_, got) = run("SET 'parallelism.default' = '2';
         INSERT INTO out
         SELECT window_start, window_end, auction, COUNT(*), SUM(price)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction;")
    .await;
    let expected = reference(TUMBLE_10S_REFERENCE).await;
    assert_eq!(sorted(&[got]), expected);
}

#[tokio::test]
async fn hop_window_with_a_filter_and_keys_in_another_order() {
    let (_, got) = run("INSERT INTO out
         SELECT window_start, window_end, auction, COUNT(*), MAX(price)
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '6' SECOND))
         WHERE price > 100
         GROUP BY auction, window_end, window_start;")
    .await;
    let expected = reference(
        "SELECT date_bin(INTERVAL '2 seconds', date_time) - o.d AS ws, \
         date_bin(INTERVAL '2 seconds', date_time) - o.d + INTERVAL '6 seconds' AS we, \
         auction, COUNT(*), MAX(price) FROM bid CROSS JOIN (VALUES (INTERVAL '0' SECOND), \
         (INTERVAL '2' SECOND), (INTERVAL '4' SECOND)) AS o(d) \
         WHERE price > 100 GROUP BY 1, 2, 3",
    )
    .await;
    assert_eq!(sorted(&[got]), expected);
}

#[tokio::test]
async fn ddl_show_describe_and_explain() {
    let (mut e, _) = engine();
    e.execute(DDL).unwrap();
    let out = e.execute("SHOW TABLES; DESCRIBE bid;").unwrap();
    let Outcome::Rows(tables) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(sorted(std::slice::from_ref(tables)), "|bid|\n|out|");
    let Outcome::Rows(desc) = &out[1] else {
        panic!("{out:?}")
    };
    let text = pretty_format_batches(std::slice::from_ref(desc))
        .unwrap()
        .to_string();
    assert!(text.contains("WATERMARK date_time - 1000 ms"), "{text}");
    let out = e
        .execute(
            "EXPLAIN INSERT INTO out SELECT window_start, window_end, auction, COUNT(*), SUM(price) \
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
             GROUP BY window_start, window_end, auction",
        )
        .unwrap();
    let Outcome::Explain(text) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        text.contains("WindowAggregate: TUMBLE(10s) on date_time"),
        "{text}"
    );
    assert!(text.contains("window aggregate: TUMBLE(10s)"), "{text}");
    assert!(text.contains("--hash(auction@0)-->"), "{text}");
}

#[test]
fn mistakes_are_named_with_where() {
    let (mut e, _) = engine();
    e.execute(DDL).unwrap();
    let mut err = |sql: &str| e_clone_err(&mut e, sql);
    assert!(
        err("CREATE TABLE t (a INT) WITH ('connector' = 'test', 'dta' = 'x')")
            .contains("no option 'dta'; did you mean 'data'?")
    );
    assert!(
        err("CREATE TABLE t (a INT) WITH ('connector' = 'kafka')")
            .contains("unknown connector 'kafka'")
    );
    assert!(err("CREATE TABLE t (a INT)").contains("needs WITH ('connector' = '...')"));
    let m = err("SELECT auction FROM bids");
    assert!(
        m.contains("table `bids` does not exist; did you mean `bid`?"),
        "{m}"
    );
    let m = err("SELECT aution FROM bid");
    assert!(m.contains("aution") && m.contains("auction"), "{m}");
    let m = err("SELECT auction\nFROM bid\nWHERE");
    assert!(m.starts_with("line 3, column 6"), "{m}");
    let m = err("SET 'parallelism.defualt' = '2'");
    assert!(m.contains("did you mean 'parallelism.default'?"), "{m}");
    let m = err("SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(price), INTERVAL '1' SECOND))");
    assert!(
        m.contains("must name `bid`'s event-time column `date_time`"),
        "{m}"
    );
}

fn e_clone_err(e: &mut SqlEngine, sql: &str) -> String {
    match e.execute(sql) {
        Ok(o) => panic!("{sql}: expected an error, got {o:?}"),
        Err(err) => err.to_string(),
    }
}

async fn run_into(sql: &str, sink: &str) -> RecordBatch {
    let (mut e, connector) = engine();
    run_in(&mut e, &connector, sql, sink).await
}

/// Runs a script (after the shared DDL) in `e` and returns what sink table `sink` received.
async fn run_in(
    e: &mut SqlEngine,
    connector: &TestConnector,
    sql: &str,
    sink: &str,
) -> RecordBatch {
    let outcomes = e
        .execute(&format!("{DDL}{sql}"))
        .unwrap_or_else(|err| panic!("{err}"));
    let plans: Vec<_> = outcomes
        .into_iter()
        .flat_map(|o| match o {
            Outcome::Insert(p) => vec![p],
            Outcome::StatementSet(plans) => plans,
            _ => Vec::new(),
        })
        .collect();
    let graph = e.compile(&plans).unwrap();
    streams_core::runtime::launch(graph, &e.config().runtime)
        .unwrap()
        .wait()
        .await
        .unwrap();
    let sink = connector.sinks.lock().unwrap().get(sink).cloned().unwrap();
    let batches = sink.batches();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    concat_batches(&schema, &batches).unwrap()
}

async fn reference_two(sql: &str) -> String {
    let ctx = SessionContext::new();
    for name in ["bid", "bid2"] {
        let table = MemTable::try_new(bid_schema(), vec![bids()]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }
    let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    sorted(&rows)
}

const PAIRS: &str = "
CREATE TABLE bid2 (
  auction BIGINT,
  price BIGINT,
  date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'test', 'data' = 'bids');
CREATE TABLE pairs (auction BIGINT, a_price BIGINT, b_price BIGINT) WITH ('connector' = 'test');
";

#[tokio::test]
async fn interval_joins_match_datafusion() {
    for (query, reference) in [
        (
            "SELECT a.auction, a.price, b.price FROM bid a JOIN bid2 b \
             ON a.auction = b.auction AND a.date_time BETWEEN b.date_time - INTERVAL '1' SECOND AND b.date_time",
            "SELECT a.auction, a.price, b.price FROM bid a JOIN bid2 b \
             ON a.auction = b.auction AND a.date_time BETWEEN b.date_time - INTERVAL '1' SECOND AND b.date_time",
        ),
        (
            // Comma join, bounds in WHERE, a residual condition, strict bounds.
            "SELECT a.auction, a.price, b.price FROM bid a, bid2 b WHERE a.auction = b.auction \
             AND a.date_time > b.date_time AND a.date_time < b.date_time + INTERVAL '2' SECOND \
             AND a.price < b.price",
            "SELECT a.auction, a.price, b.price FROM bid a, bid2 b WHERE a.auction = b.auction \
             AND a.date_time > b.date_time AND a.date_time < b.date_time + INTERVAL '2' SECOND \
             AND a.price < b.price",
        ),
        (
            "SELECT a.auction, a.price, b.price FROM bid a LEFT JOIN bid2 b \
             ON a.auction = b.auction AND a.price = b.price + 1 \
             AND a.date_time BETWEEN b.date_time - INTERVAL '3' SECOND AND b.date_time + INTERVAL '3' SECOND",
            "SELECT a.auction, a.price, b.price FROM bid a LEFT JOIN bid2 b \
             ON a.auction = b.auction AND a.price = b.price + 1 \
             AND a.date_time BETWEEN b.date_time - INTERVAL '3' SECOND AND b.date_time + INTERVAL '3' SECOND",
        ),
    ] {
        let got = run_into(
            &format!("{PAIRS} SET 'parallelism.default' = '2'; INSERT INTO pairs {query};"),
            "pairs",
        )
        .await;
        let expected = reference_two(reference).await;
        assert!(!expected.is_empty());
        assert_eq!(sorted(&[got]), expected, "{query}");
    }
}

#[tokio::test]
async fn regular_joins_match_datafusion_once_applied() {
    for join in ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"] {
        // Filtered inputs keep the pairs per key (every row is kept) to thousands.
        let from = format!(
            "(SELECT * FROM bid WHERE price < 100) a {join} (SELECT * FROM bid2 WHERE price < 150) b \
             ON a.auction = b.auction AND a.price < b.price AND b.price < a.price + 80"
        );
        let got = run_into(
            &format!(
                "{PAIRS} SET 'parallelism.default' = '2';
                 INSERT INTO pairs SELECT a.auction, a.price, b.price FROM {from};"
            ),
            "pairs",
        )
        .await;
        let applied = streams_core::changelog::materialize(&got.schema(), &[got]).unwrap();
        let expected =
            reference_two(&format!("SELECT a.auction, a.price, b.price FROM {from}")).await;
        assert!(!expected.is_empty());
        assert_eq!(sorted(&[applied]), expected, "{join}");
    }
}

const WINDOWED: &str = "
CREATE TABLE wj (auction BIGINT, a_price BIGINT, b_price BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3))
  WITH ('connector' = 'test');
CREATE TABLE rows_out (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3)) WITH ('connector' = 'test');
";

#[tokio::test]
async fn window_join_in_flinks_form_matches_datafusion() {
    for (join, df_join) in [("JOIN", "JOIN"), ("LEFT JOIN", "LEFT JOIN")] {
        let got = run_into(
            &format!(
                "{PAIRS}{WINDOWED} SET 'parallelism.default' = '2';
                 INSERT INTO wj
                 SELECT L.auction, L.price, R.price, L.window_start, L.window_end
                 FROM (SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '5' SECOND))) L
                 {join} (SELECT * FROM TABLE(TUMBLE(TABLE bid2, DESCRIPTOR(date_time), INTERVAL '5' SECOND))) R
                 ON L.auction = R.auction AND L.window_start = R.window_start AND L.window_end = R.window_end;"
            ),
            "wj",
        )
        .await;
        let expected = reference_two(&format!(
            "SELECT a.auction, a.price, b.price, date_bin(INTERVAL '5 seconds', a.date_time), \
             date_bin(INTERVAL '5 seconds', a.date_time) + INTERVAL '5 seconds' \
             FROM bid a {df_join} bid2 b ON a.auction = b.auction \
             AND date_bin(INTERVAL '5 seconds', a.date_time) = date_bin(INTERVAL '5 seconds', b.date_time)"
        ))
        .await;
        assert!(!expected.is_empty());
        assert_eq!(sorted(&[got]), expected, "{join}");
    }
}

#[tokio::test]
async fn a_window_function_on_its_own_gives_each_row_its_windows() {
    let got = run_into(
        &format!(
            "{PAIRS}{WINDOWED}
             INSERT INTO rows_out SELECT auction, window_start, window_end
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '6' SECOND))
             WHERE price > 400;"
        ),
        "rows_out",
    )
    .await;
    let expected = reference_two(
        "SELECT auction, date_bin(INTERVAL '2 seconds', date_time) - o.d, \
         date_bin(INTERVAL '2 seconds', date_time) - o.d + INTERVAL '6 seconds' \
         FROM bid CROSS JOIN (VALUES (INTERVAL '0' SECOND), (INTERVAL '2' SECOND), \
         (INTERVAL '4' SECOND)) AS o(d) WHERE price > 400",
    )
    .await;
    assert_eq!(sorted(&[got]), expected);
}

#[tokio::test]
async fn rust_udfs_and_udafs_work_in_windows() {
    use streams_core::arrow::array::{Array, ArrayRef, AsArray};
    use streams_core::arrow::datatypes::Int64Type;
    use streams_core::datafusion::logical_expr::{
        Accumulator, ColumnarValue, Volatility, create_udaf, create_udf,
    };
    use streams_core::datafusion::scalar::ScalarValue;

    #[derive(Debug)]
    struct Spread(Option<(i64, i64)>);
    impl Accumulator for Spread {
        fn update_batch(
            &mut self,
            values: &[ArrayRef],
        ) -> streams_core::datafusion::error::Result<()> {
            for v in values[0].as_primitive::<Int64Type>().iter().flatten() {
                self.0 = Some(self.0.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
            }
            Ok(())
        }
        fn merge_batch(
            &mut self,
            states: &[ArrayRef],
        ) -> streams_core::datafusion::error::Result<()> {
            let (lo, hi) = (
                states[0].as_primitive::<Int64Type>(),
                states[1].as_primitive::<Int64Type>(),
            );
            for i in 0..lo.len() {
                if lo.is_valid(i) {
                    let (a, b) = (lo.value(i), hi.value(i));
                    self.0 = Some(self.0.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                }
            }
            Ok(())
        }
        fn state(&mut self) -> streams_core::datafusion::error::Result<Vec<ScalarValue>> {
            Ok(vec![
                ScalarValue::Int64(self.0.map(|p| p.0)),
                ScalarValue::Int64(self.0.map(|p| p.1)),
            ])
        }
        fn evaluate(&mut self) -> streams_core::datafusion::error::Result<ScalarValue> {
            Ok(ScalarValue::Int64(self.0.map(|(lo, hi)| hi - lo)))
        }
        fn size(&self) -> usize {
            std::mem::size_of::<Self>()
        }
    }
    let spread = create_udaf(
        "spread",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(Spread(None)))),
        Arc::new(vec![DataType::Int64, DataType::Int64]),
    );
    let cents = create_udf(
        "cents",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let a = args[0].to_array(1)?;
            let out: streams_core::arrow::array::Int64Array = a
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| v * 100))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    );
    let (mut e, connector) = engine();
    e.register_udaf(spread.clone()).unwrap();
    e.register_udf(cents).unwrap();
    let got = run_in(
        &mut e,
        &connector,
        "INSERT INTO out SELECT window_start, window_end, auction, spread(price), MAX(cents(price)) \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, auction;",
        "out",
    )
    .await;
    let ctx = SessionContext::new();
    ctx.register_udaf(spread);
    ctx.register_table(
        "bid",
        Arc::new(MemTable::try_new(bid_schema(), vec![bids()]).unwrap()),
    )
    .unwrap();
    let expected = ctx
        .sql(
            "SELECT date_bin(INTERVAL '10 seconds', date_time), date_bin(INTERVAL '10 seconds', date_time) + INTERVAL '10 seconds', \
             auction, spread(price), MAX(price) * 100 FROM bid GROUP BY 1, 2, 3",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(sorted(&[got]), sorted(&expected));
}

#[tokio::test]
async fn a_statement_set_is_one_job_that_reads_its_table_once() {
    let (mut e, _) = engine();
    let set = "CREATE TABLE per_auction (auction BIGINT, n BIGINT) WITH ('connector' = 'test');
         SET 'parallelism.default' = '2';
         EXECUTE STATEMENT SET BEGIN
           INSERT INTO out
           SELECT window_start, window_end, auction, COUNT(*), SUM(price)
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end, auction;
           INSERT INTO per_auction
           SELECT auction, COUNT(*)
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' HOUR))
           GROUP BY window_start, window_end, auction;
         END;";
    let outcomes = e.execute(&format!("{DDL}{set}")).unwrap();
    let Some(Outcome::StatementSet(plans)) = outcomes.last() else {
        panic!("{outcomes:?}");
    };
    let topology = e.compile(plans).unwrap().topology().render();
    assert_eq!(topology.matches("source: bid").count(), 1, "{topology}");
    assert_eq!(topology.matches("sink: ").count(), 2, "{topology}");

    let (mut e, connector) = engine();
    let windows = run_in(&mut e, &connector, set, "out").await;
    let expected = reference(TUMBLE_10S_REFERENCE).await;
    assert_eq!(sorted(&[windows]), expected);
    let per_auction = connector
        .sinks
        .lock()
        .unwrap()
        .get("per_auction")
        .cloned()
        .unwrap();
    let batches = per_auction.batches();
    let got = concat_batches(&batches[0].schema(), &batches).unwrap();
    let expected = reference(
        "SELECT auction, COUNT(*) FROM bid \
         GROUP BY date_bin(INTERVAL '1 hour', date_time), auction",
    )
    .await;
    assert_eq!(sorted(&[got]), expected);
}

#[test]
fn statement_sets_hold_inserts_only_and_are_closed() {
    let (mut e, _) = engine();
    e.execute(DDL).unwrap();
    let err = e_clone_err(
        &mut e,
        "EXECUTE STATEMENT SET BEGIN SELECT * FROM bid; END;",
    );
    assert!(err.contains("STATEMENT SET holds INSERT INTO"), "{err}");
    let err = e_clone_err(
        &mut e,
        "EXECUTE STATEMENT SET BEGIN INSERT INTO out SELECT * FROM out;",
    );
    assert!(err.contains("END"), "{err}");
    let err = e_clone_err(&mut e, "EXECUTE STATEMENT SET BEGIN END;");
    assert!(err.contains("empty"), "{err}");
}
