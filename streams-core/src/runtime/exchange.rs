//! Sending a subtask's output along an edge: to the same subtask (forward), by key hash (each
//! key to the subtask owning its key group), or to every subtask (broadcast).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::partition::{key_group, subtask_for_key_group};
use crate::{Error, Result};

/// Hash seed for key groups. Fixed, so a key maps to the same key group in every process and
/// after a restart (checkpointed state is stored per key group).
const KEY_HASH: RandomState = RandomState::with_seed(0x5eed_2026);

/// How one edge leaves a subtask.
#[derive(Debug)]
pub(crate) enum Route {
    /// To subtask i of the downstream node.
    Forward(Sender<Message>),
    /// By key: `senders[j]` reaches downstream subtask j.
    Hash {
        keys: Vec<Arc<dyn PhysicalExpr>>,
        senders: Vec<Sender<Message>>,
        max_parallelism: u32,
    },
    /// To every downstream subtask.
    Broadcast(Vec<Sender<Message>>),
    /// Each batch to the next downstream subtask in turn.
    Rebalance {
        senders: Vec<Sender<Message>>,
        next: AtomicUsize,
    },
}

/// One outgoing edge: which output port feeds it and where it goes.
#[derive(Debug)]
pub(crate) struct EdgeOut {
    pub(crate) port: usize,
    pub(crate) route: Route,
}

async fn send(tx: &Sender<Message>, msg: Message, cancel: &CancellationToken) -> Result<()> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Error::Cancelled),
        // A closed channel means the receiving task has stopped: the job is failing or
        // cancelled, and the cause is reported by that task.
        r = tx.send(msg) => r.map_err(|_| Error::Cancelled),
    }
}

impl EdgeOut {
    fn senders(&self) -> &[Sender<Message>] {
        match &self.route {
            Route::Forward(tx) => std::slice::from_ref(tx),
            Route::Hash { senders, .. }
            | Route::Broadcast(senders)
            | Route::Rebalance { senders, .. } => senders,
        }
    }

    /// Sends rows; returns how many batches went out.
    pub(crate) async fn send_batch(
        &self,
        batch: RecordBatch,
        cancel: &CancellationToken,
    ) -> Result<usize> {
        match &self.route {
            Route::Forward(tx) => send(tx, Message::Data(batch), cancel).await.map(|_| 1),
            Route::Rebalance { senders, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % senders.len().max(1);
                match senders.get(i) {
                    Some(tx) => send(tx, Message::Data(batch), cancel).await.map(|_| 1),
                    None => Ok(0),
                }
            }
            Route::Broadcast(txs) => {
                for tx in txs {
                    send(tx, Message::Data(batch.clone()), cancel).await?;
                }
                Ok(txs.len())
            }
            Route::Hash {
                keys,
                senders,
                max_parallelism,
            } => {
                let parts = partition(&batch, keys, senders.len(), *max_parallelism)?;
                let mut sent = 0;
                for (tx, part) in senders.iter().zip(parts) {
                    if let Some(part) = part {
                        send(tx, Message::Data(part), cancel).await?;
                        sent += 1;
                    }
                }
                Ok(sent)
            }
        }
    }

    /// Sends a control message (watermark, barrier, end) to every receiver of the edge.
    pub(crate) async fn send_control(
        &self,
        msg: &Message,
        cancel: &CancellationToken,
    ) -> Result<()> {
        for tx in self.senders() {
            send(tx, msg.clone(), cancel).await?;
        }
        Ok(())
    }
}

/// Splits `batch` by the key groups of its keys: entry j holds the rows of subtask j.
pub(crate) fn partition(
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    parallelism: usize,
    max_parallelism: u32,
) -> Result<Vec<Option<RecordBatch>>> {
    let n = batch.num_rows();
    if parallelism <= 1 {
        return Ok(vec![Some(batch.clone())]);
    }
    let columns = keys
        .iter()
        .map(|k| k.evaluate(batch)?.into_array(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut hashes = vec![0u64; n];
    create_hashes(&columns, &KEY_HASH, &mut hashes)?;
    let mut rows: Vec<Vec<u32>> = vec![Vec::with_capacity(n / parallelism + 1); parallelism];
    let p = parallelism as u32;
    for (i, h) in hashes.iter().enumerate() {
        let target = subtask_for_key_group(key_group(*h, max_parallelism), p, max_parallelism);
        rows[target as usize].push(i as u32);
    }
    rows.into_iter()
        .map(|idx| {
            if idx.is_empty() {
                Ok(None)
            } else if idx.len() == n {
                Ok(Some(batch.clone()))
            } else {
                Ok(Some(take_record_batch(batch, &UInt32Array::from(idx))?))
            }
        })
        .collect()
}
