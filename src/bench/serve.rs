//! `rstreams bench serve`: a job keeping a materialized view runs alone, then again while
//! `clients` PostgreSQL clients each query the view once a second; reported: the job's input
//! rows/s both ways, and the queries' latency. Each client also checks that the totals it
//! sees never go back (answers from one epoch after another).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use streams_core::connector::ConnectorRegistry;
use streams_core::runtime::JobHandle;
use streams_serve::{Access, Endpoint, JobList, ServeOptions, ViewCatalog, ViewConnector};
use streams_sql::{Outcome, SqlEngine};

/// What to run.
#[derive(Debug)]
pub(crate) struct ServeBenchOptions {
    pub(crate) clients: usize,
    pub(crate) seconds: u64,
    pub(crate) parallelism: usize,
    pub(crate) dir: PathBuf,
}

/// What was measured.
#[derive(Debug)]
pub(crate) struct ServeFigures {
    pub(crate) rows_per_sec_alone: f64,
    pub(crate) rows_per_sec_queried: f64,
    pub(crate) queries: u64,
    pub(crate) errors: u64,
    pub(crate) went_back: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

const QUERY: &str = "SELECT channel, bids FROM per_channel ORDER BY bids DESC LIMIT 10";
const TOTAL: &str = "SELECT CAST(SUM(bids) AS BIGINT) FROM per_channel";

fn script(parallelism: usize, state: &std::path::Path) -> String {
    format!(
        "SET 'parallelism.default' = '{parallelism}';
         SET 'execution.checkpointing.interval' = '1s';
         SET 'state.checkpoints.dir' = '{}';
         CREATE TABLE nexmark (event_type INT,
           bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR>)
           WITH ('connector' = 'nexmark');
         CREATE MATERIALIZED VIEW per_channel AS
           SELECT bid.channel AS channel, COUNT(*) AS bids, MAX(bid.price) AS top
           FROM nexmark WHERE event_type = 2 GROUP BY bid.channel;",
        state.display()
    )
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Starts the view job with its state in `state`.
fn launch(
    views: &Arc<ViewCatalog>,
    parallelism: usize,
    state: &std::path::Path,
) -> Result<JobHandle, String> {
    let mut registry = ConnectorRegistry::new();
    streams_connectors::register_builtin(&mut registry);
    registry.register(Arc::new(ViewConnector::new(Arc::clone(views))));
    let mut engine = SqlEngine::new(registry);
    let outcomes = engine.execute(&script(parallelism, state)).map_err(err)?;
    let plan = outcomes
        .into_iter()
        .find_map(|o| match o {
            Outcome::Insert(p) => Some(p),
            _ => None,
        })
        .ok_or("no job in the script")?;
    engine.launch(&plan, "per_channel").map_err(err)
}

/// Source rows read so far.
fn rows_in(job: &JobHandle) -> u64 {
    job.metrics()
        .snapshot()
        .iter()
        .filter(|m| m.name == "source")
        .map(|m| m.rows_out)
        .sum()
}

/// Rows/s over `seconds`, after two seconds of warm-up.
async fn measure(job: &JobHandle, seconds: u64) -> f64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (start, at) = (rows_in(job), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    (rows_in(job) - start) as f64 / at.elapsed().as_secs_f64()
}

#[derive(Debug, Default)]
struct Tally {
    queries: u64,
    errors: u64,
    went_back: u64,
}

async fn client(
    port: u16,
    until: Instant,
    latency: Arc<Mutex<Histogram<u64>>>,
    tally: Arc<Mutex<Tally>>,
) {
    let url = format!("host=127.0.0.1 port={port} user=bench");
    let Ok((db, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        if let Ok(mut t) = tally.lock() {
            t.errors += 1;
        }
        return;
    };
    tokio::spawn(connection);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_total = 0i64;
    while Instant::now() < until {
        tick.tick().await;
        let at = Instant::now();
        let answer = db.query(QUERY, &[]).await;
        let took = at.elapsed();
        let total = db
            .query_one(TOTAL, &[])
            .await
            .map(|r| r.get::<_, Option<i64>>(0).unwrap_or(0));
        let (Ok(mut t), Ok(mut h)) = (tally.lock(), latency.lock()) else {
            return;
        };
        match (answer, total) {
            (Ok(_), Ok(total)) => {
                t.queries += 1;
                let _ = h.record(took.as_micros().max(1) as u64);
                if total < last_total {
                    t.went_back += 1;
                }
                last_total = total;
            }
            _ => t.errors += 1,
        }
    }
}

/// Runs both phases.
pub(crate) fn run(opts: &ServeBenchOptions) -> Result<ServeFigures, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    runtime.block_on(async {
        let alone = {
            let views = ViewCatalog::new();
            let job = launch(&views, opts.parallelism, &opts.dir.join("alone"))?;
            let rate = measure(&job, opts.seconds).await;
            job.stop().await.map_err(err)?;
            rate
        };
        let views = ViewCatalog::new();
        let job = launch(&views, opts.parallelism, &opts.dir.join("queried"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(err)?
            .port();
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let server = Endpoint::start(
            Arc::clone(&views),
            JobList::new(),
            ServeOptions {
                listen,
                credentials: None,
                access: Access::default(),
            },
            2,
        )
        .map_err(err)?;
        // The clients stand for other processes: threads of their own, not the job's.
        let clients_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(err)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3).map_err(err)?));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let until = Instant::now() + Duration::from_secs(opts.seconds + 2);
        let clients: Vec<_> = (0..opts.clients)
            .map(|_| {
                clients_runtime.spawn(client(
                    port,
                    until,
                    Arc::clone(&latency),
                    Arc::clone(&tally),
                ))
            })
            .collect();
        let queried = measure(&job, opts.seconds).await;
        for c in clients {
            let _ = c.await;
        }
        job.stop().await.map_err(err)?;
        drop(server);
        clients_runtime.shutdown_background();
        let h = latency.lock().map_err(err)?;
        let t = tally.lock().map_err(err)?;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Ok(ServeFigures {
            rows_per_sec_alone: alone,
            rows_per_sec_queried: queried,
            queries: t.queries,
            errors: t.errors,
            went_back: t.went_back,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
        })
    })
}
