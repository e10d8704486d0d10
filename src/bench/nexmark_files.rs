//! The `json` mode of `rstreams bench nexmark`: the events as JSON lines in `bid/`,
//! `auction/` and `person/` directories, read by the `filesystem` connector. The files are
//! written once per event count and parallelism (one part file per subtask of each table), by
//! a job of this engine from the `nexmark` generator, into a directory under the system's
//! temporary directory that later runs reuse.

use std::path::{Path, PathBuf};

use streams_connectors::register_builtin;
use streams_core::connector::ConnectorRegistry;
use streams_sql::{Outcome, SqlEngine};

use super::nexmark::generator_ddl;

/// The three tables: name and columns, as the views of `ddl.sql` give them.
const TABLES: [(&str, &str); 3] = [
    (
        "person",
        "id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR, \
         state VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR",
    ),
    (
        "auction",
        "id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT, \
         `dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, \
         extra VARCHAR",
    ),
    (
        "bid",
        "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, \
         `dateTime` TIMESTAMP(3), extra VARCHAR",
    ),
];

/// Written last: a directory without it is from a generation that did not finish.
const COMPLETE: &str = "COMPLETE";

/// Where the files of `events` events in `parallelism` parts live.
pub(crate) fn data_dir(events: u64, parallelism: usize) -> PathBuf {
    std::env::temp_dir().join(format!("rstreams-nexmark-json-{events}-p{parallelism}"))
}

/// The `person`, `auction` and `bid` tables over the files in `dir`, with the suite's
/// watermark (4 seconds behind the event time).
pub(crate) fn ddl(dir: &Path) -> String {
    TABLES
        .iter()
        .map(|(name, columns)| {
            format!(
                "CREATE TABLE {name} ({columns},\n  WATERMARK FOR `dateTime` AS `dateTime` - \
                 INTERVAL '4' SECOND\n) WITH ('connector' = 'filesystem', 'path' = '{}', \
                 'format' = 'json');\n",
                dir.join(name).display()
            )
        })
        .collect()
}

/// The files of `events` events in `parallelism` parts, written unless a finished earlier
/// run left them.
pub(crate) fn prepare(events: u64, parallelism: usize) -> Result<PathBuf, String> {
    let dir = data_dir(events, parallelism);
    if dir.join(COMPLETE).exists() {
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    for d in [&dir, &partial] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
    }
    let mut script = format!(
        "SET 'parallelism.default' = '{parallelism}';\n{}",
        generator_ddl(events, parallelism)?
    );
    for (name, columns) in TABLES {
        script += &format!(
            "CREATE TABLE {name}_files ({columns}) WITH ('connector' = 'filesystem', \
             'path' = '{}', 'format' = 'json', 'sink.rolling-policy.file-size' = '1TB');\n",
            partial.join(name).display()
        );
    }
    script += "EXECUTE STATEMENT SET BEGIN\n";
    for (name, _) in TABLES {
        script += &format!("INSERT INTO {name}_files SELECT * FROM {name};\n");
    }
    script += "END;\n";
    let mut registry = ConnectorRegistry::new();
    register_builtin(&mut registry);
    let mut engine = SqlEngine::new(registry);
    let plans = engine
        .execute(&script)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find_map(|o| match o {
            Outcome::StatementSet(p) => Some(p),
            _ => None,
        })
        .ok_or("the generating statement set made no job")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let job = engine
            .launch_set(&plans, "nexmark-json-files")
            .map_err(|e| e.to_string())?;
        job.wait().await.map_err(|e| e.to_string())
    })?;
    std::fs::write(partial.join(COMPLETE), b"").map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
