//! Argument parsing, dispatch, logging and error reporting for the `rstreams` binary.

mod bench;
mod consume;
mod error;
mod group;
mod json_fields;
mod live;
mod output;
mod produce;
mod progress;
mod run;
mod serve;
mod topic;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use streams_queue::{StartFrom, Store};

pub(crate) use error::{CliError, Result};

/// Default data directory, relative to the working directory.
const DEFAULT_DATA_DIR: &str = "./rstreams-data";
/// Environment variable naming the data directory when `--data-dir` is not given.
const DATA_DIR_ENV: &str = "RSTREAMS_DATA_DIR";

/// rstreams: a stream processing engine over an embedded logical-queue store.
///
/// Exit codes: 0 success, 1 error (one line `error: ...` on stderr), 2 bad usage.
/// Logging goes to stderr; set RUST_LOG (default `warn`) to see more.
#[derive(Debug, Parser)]
#[command(name = "rstreams", version)]
pub(crate) struct Cli {
    /// Data directory holding the store [default: ./rstreams-data, or $RSTREAMS_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect and administer topics
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Append the lines of standard input to a topic, one record per line
    Produce(produce::ProduceArgs),
    /// Print a topic's records to standard output, one per line
    Consume(consume::ConsumeArgs),
    /// Inspect and administer consumer groups
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Run a SQL script: each INSERT INTO becomes a job; Ctrl-C or SIGTERM stops with a
    /// savepoint that the next run resumes from
    Run(run::RunArgs),
    /// Serve materialized views over the PostgreSQL wire protocol; users allowed DDL define
    /// tables, views and jobs from their SQL client, kept across restarts
    Serve(serve::ServeArgs),
    /// Run benchmarks and print medians (build with --release)
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// How `describe` commands print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// An aligned table for people
    #[default]
    Table,
    /// One JSON document for programs
    Json,
}

/// Parses arguments, runs the command and turns its outcome into an exit code.
pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging();
    match run(cli) {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the message holds.
            let msg = e.to_string().replace(['\n', '\r'], " ");
            let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Prints help and version as clap does; any other usage error as one line (clap's message up
/// to its usage block, joined), exit code 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let _ = writeln!(
        std::io::stderr().lock(),
        "{} (see --help)",
        message.join(" ")
    );
    ExitCode::from(2)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogLine(Vec::new()))
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// One log event, written to stderr through the console when dropped, so that it scrolls
/// above `rstreams run`'s progress line instead of breaking it.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let text = String::from_utf8_lossy(&self.0);
            streams_connectors::print::console()
                .print(&text, streams_connectors::print::Stream::Stderr);
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let dir = data_dir(cli.data_dir);
    match cli.command {
        Command::Topic(cmd) => topic::run(&dir, cmd),
        Command::Produce(args) => produce::run(&open_store(&dir)?, args),
        Command::Consume(args) => consume::run(&open_store(&dir)?, args),
        Command::Group(cmd) => group::run(&open_store(&dir)?, cmd),
        Command::Run(args) => run::run(&dir, args),
        Command::Serve(args) => serve::serve(&dir, args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// `--data-dir`, else `$RSTREAMS_DATA_DIR`, else `./rstreams-data`.
fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(DATA_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Opens the store in `dir`, which must exist (only `topic create` makes a new store).
pub(crate) fn open_store(dir: &Path) -> Result<Store> {
    if !dir.exists() {
        return Err(CliError::NoStore(dir.to_path_buf()));
    }
    create_store(dir)
}

/// Opens the store in `dir`, creating it if needed.
pub(crate) fn create_store(dir: &Path) -> Result<Store> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "the data directory {} is not a directory",
            dir.display()
        )));
    }
    Ok(Store::open(dir)?)
}

/// Flushes and closes a store that was written to, so that failures are reported.
pub(crate) fn close_store(store: Store) -> Result<()> {
    Ok(store.close()?)
}

/// Parses `earliest`, `latest` or an RFC 3339 time.
pub(crate) fn parse_start(s: &str) -> std::result::Result<StartFrom, String> {
    match s {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        _ => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| StartFrom::Timestamp(t.timestamp_millis()))
            .map_err(|e| {
                format!(
                    "`{s}` is not `earliest`, `latest` or an RFC 3339 time such as \
                     2024-05-01T12:00:00Z ({e})"
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("earliest"), Ok(StartFrom::Earliest));
        assert_eq!(parse_start("latest"), Ok(StartFrom::Latest));
        assert_eq!(
            parse_start("1970-01-01T00:00:01.5Z"),
            Ok(StartFrom::Timestamp(1500))
        );
        assert!(parse_start("yesterday").unwrap_err().contains("yesterday"));
    }
}
