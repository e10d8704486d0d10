//! `rstreams group ...`: list, describe (offsets and lag), reset and delete consumer groups.

use clap::Subcommand;
use serde_json::json;
use streams_queue::{QueueLag, StartFrom, Store};

use super::output::{Align, Table, print};
use super::{CliError, Format, Result, close_store, parse_start};

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List groups that have committed offsets, one name per line
    List,
    /// Show a group's committed offset and lag in each queue of each topic it reads
    Describe {
        /// Group name
        group: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Set a group's offsets in every queue of a topic
    Reset {
        /// Group name (created if it has no offsets yet)
        group: String,
        /// Topic whose offsets to set
        #[arg(long)]
        topic: String,
        /// `earliest`, `latest` or an RFC 3339 time (the first record at or after it)
        #[arg(long, value_name = "WHERE", value_parser = parse_start)]
        to: StartFrom,
    },
    /// Forget a group and all its offsets
    Delete {
        /// Group name
        group: String,
    },
}

pub(crate) fn run(store: &Store, cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::List => {
            let mut text = String::new();
            for g in store.list_groups()? {
                text.push_str(&g);
                text.push('\n');
            }
            print(&text)
        }
        GroupCommand::Describe { group, format } => describe(store, &group, format),
        GroupCommand::Reset { group, topic, to } => {
            let offsets = store.reset_group(&group, &topic, to)?;
            close_store(store.clone())?;
            let mut table = Table::new(&[("QUEUE", Align::Right), ("OFFSET", Align::Right)]);
            for (q, o) in offsets {
                table.row(vec![q.to_string(), o.to_string()]);
            }
            print(&format!(
                "group {group} now starts topic {topic} at:\n{}",
                table.render()
            ))
        }
        GroupCommand::Delete { group } => {
            exists(store, &group)?;
            store.delete_group(&group)?;
            close_store(store.clone())?;
            print(&format!("deleted group {group}\n"))
        }
    }
}

fn exists(store: &Store, group: &str) -> Result<()> {
    if store.list_groups()?.iter().any(|g| g == group) {
        Ok(())
    } else {
        Err(CliError::GroupNotFound(group.to_string()))
    }
}

fn describe(store: &Store, group: &str, format: Format) -> Result<()> {
    exists(store, group)?;
    let mut lags: Vec<(String, Vec<QueueLag>)> = Vec::new();
    for topic in store.group_topics(group)? {
        let lag = store.group_lag(group, &topic)?;
        lags.push((topic, lag));
    }
    match format {
        Format::Json => {
            let topics: Vec<serde_json::Value> = lags
                .iter()
                .map(|(topic, queues)| {
                    json!({
                        "topic": topic,
                        "lag": queues.iter().map(|q| q.lag).sum::<u64>(),
                        "queues": queues.iter().map(|q| json!({
                            "queue": q.queue,
                            "committed": q.committed,
                            "start": q.start,
                            "end": q.end,
                            "lag": q.lag,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print(&format!(
                "{:#}\n",
                json!({ "group": group, "topics": topics })
            ))
        }
        Format::Table => {
            let mut table = Table::new(&[
                ("TOPIC", Align::Left),
                ("QUEUE", Align::Right),
                ("COMMITTED", Align::Right),
                ("START", Align::Right),
                ("END", Align::Right),
                ("LAG", Align::Right),
            ]);
            let mut total = 0;
            for (topic, queues) in &lags {
                for q in queues {
                    total += q.lag;
                    table.row(vec![
                        topic.clone(),
                        q.queue.to_string(),
                        q.committed
                            .map_or_else(|| "-".to_string(), |c| c.to_string()),
                        q.start.to_string(),
                        q.end.to_string(),
                        q.lag.to_string(),
                    ]);
                }
            }
            print(&format!(
                "group {group}: total lag {total}\n\n{}",
                table.render()
            ))
        }
    }
}
