//! The store thread: makes batches durable off the poll loop, so a large transaction (a
//! 100,000-entry whitelist change) never stalls the nodes.
//!
//! Protocol with the loop: the loop [`StoreThread::submit`]s one [`Batch`] at a time (the
//! records of one or more turns, numbered by `seq`); the thread writes the audit lines that
//! belong to it (appended and `fdatasync`'d first: an audit line is durable no later than its
//! change), commits the records as one transaction, sends a [`Done`] back and calls `wake`
//! (the loop's `mio::Waker`). The loop collects it with [`StoreThread::try_done`], releases
//! what the batch announces, and submits the next one. A failed batch comes back whole so the
//! loop can retry it; applying a batch twice changes nothing.

use super::Db;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records to make durable together.
#[derive(Debug, Default)]
pub struct Batch {
    /// Sequence number; frames held for this batch are released when it is durable.
    pub seq: u64,
    /// Encoded [`super::Record`]s, in event order.
    pub records: Vec<u8>,
    /// Audit log lines of the changes in `records` (written, and synced, before them).
    pub audit: Vec<u8>,
    /// The audit lines are written (a retry does not write them twice).
    pub audit_written: bool,
    /// Transactions of this batch the store acknowledged (a failover group splits a batch
    /// into several): a retry resumes after them, never replays them (a replayed earlier
    /// transaction would put back values the later ones replaced).
    pub txns_written: usize,
    /// A failover group's term (which election of this member) the batch belongs to; a
    /// batch of an earlier term is never written. 0 for the local database.
    pub term: u64,
}

/// A batch the thread is finished with.
#[derive(Debug)]
pub struct Done {
    /// The batch (its buffers come back for reuse, or for a retry after an error).
    pub batch: Batch,
    /// Whether it is durable.
    pub result: io::Result<()>,
    /// How long the commit took.
    pub elapsed: Duration,
    /// The transactions written for it, in order (one for the local database; a failover
    /// group's batch may take several, see `--etcd-max-txn-ops`).
    pub txns: Vec<TxnStat>,
}

/// One transaction a batch was written in: for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct TxnStat {
    /// Keys it put or deleted.
    pub ops: usize,
    /// How long it took to be accepted.
    pub elapsed: Duration,
}

pub(super) enum Msg {
    Batch(Batch),
    Fault(Arc<AtomicBool>),
    /// Give up the role of the group's active member (a failover group only).
    StepDown,
}

/// What the store thread tells the loop.
#[derive(Debug)]
pub enum StoreEvent {
    /// A batch is finished.
    Done(Done),
    /// The role in a failover group changed.
    #[cfg(feature = "etcd")]
    Role(super::group::RoleChange),
}

/// The handle the loop keeps: a channel each way and the thread.
pub struct StoreThread {
    dir: PathBuf,
    tx: Option<mpsc::Sender<Msg>>,
    rx: mpsc::Receiver<StoreEvent>,
    thread: Option<JoinHandle<()>>,
}

impl StoreThread {
    /// Starts the thread that owns `db` (and the audit log, if any); `wake` is called after
    /// every batch.
    pub fn spawn(
        mut db: Db,
        mut audit: Option<File>,
        wake: Box<dyn Fn() + Send>,
    ) -> io::Result<StoreThread> {
        let dir = db.dir().to_path_buf();
        let (tx, batches) = mpsc::channel::<Msg>();
        let (results, rx) = mpsc::channel::<StoreEvent>();
        let thread = std::thread::Builder::new()
            .name("login-node-store".into())
            .spawn(move || {
                for msg in batches {
                    let mut batch = match msg {
                        Msg::Batch(b) => b,
                        Msg::Fault(switch) => {
                            db.inject_fault(switch);
                            continue;
                        }
                        Msg::StepDown => continue,
                    };
                    let start = Instant::now();
                    let result = write_audit(&mut audit, &mut batch)
                        .and_then(|()| db.commit(&batch.records));
                    let elapsed = start.elapsed();
                    let (result, txns) = match result {
                        Ok(ops) => (Ok(()), vec![TxnStat { ops, elapsed }]),
                        Err(e) => (Err(e), Vec::new()),
                    };
                    let done = Done {
                        batch,
                        result,
                        elapsed,
                        txns,
                    };
                    if results.send(StoreEvent::Done(done)).is_err() {
                        return; // the loop is gone
                    }
                    wake();
                }
            })?;
        Ok(StoreThread {
            dir,
            tx: Some(tx),
            rx,
            thread: Some(thread),
        })
    }

    /// Starts the store thread of a failover group member (see [`super::group`]): it
    /// campaigns at once and reports its role through [`StoreEvent::Role`].
    #[cfg(feature = "etcd")]
    pub fn spawn_group(
        cfg: super::group::GroupConfig,
        audit: Option<File>,
        wake: Box<dyn Fn() + Send>,
    ) -> io::Result<StoreThread> {
        let dir = PathBuf::from(format!("etcd:{}", cfg.prefix));
        let (tx, batches) = mpsc::channel::<Msg>();
        let (results, rx) = mpsc::channel::<StoreEvent>();
        let thread = std::thread::Builder::new()
            .name("login-node-group".into())
            .spawn(move || super::group::run(cfg, batches, results, wake, audit))?;
        Ok(StoreThread {
            dir,
            tx: Some(tx),
            rx,
            thread: Some(thread),
        })
    }

    /// Where the state lives (a directory, or `etcd:<prefix>`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Gives up the active role of a failover group (nothing for a local database).
    pub fn step_down(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::StepDown);
        }
    }

    /// Hands a batch to the thread. False if the thread has died (the batch is lost to it;
    /// the caller keeps its frames held and reports the store unwritable).
    pub fn submit(&self, batch: Batch) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send(Msg::Batch(batch)).is_ok())
    }

    /// False once the thread has ended (a panic in the database layer, say): nothing more
    /// can be made durable.
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The next thing the thread reported, if any (never blocks).
    pub fn try_event(&self) -> Option<StoreEvent> {
        self.rx.try_recv().ok()
    }

    /// Waits up to `timeout` for the thread's next report (shutdown only).
    pub fn wait_event(&self, timeout: Duration) -> Option<StoreEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Test hook: while `switch` is true, commits fail as on a full disk.
    #[doc(hidden)]
    pub fn inject_fault(&self, switch: Arc<AtomicBool>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Fault(switch));
        }
    }
}

impl Drop for StoreThread {
    fn drop(&mut self) {
        self.tx = None; // ends the thread's loop once it has finished its batch
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Appends the batch's audit lines to the audit log and syncs it, once per batch.
fn write_audit(audit: &mut Option<File>, batch: &mut Batch) -> io::Result<()> {
    if batch.audit.is_empty() || batch.audit_written {
        return Ok(());
    }
    if let Some(file) = audit {
        file.write_all(&batch.audit)?;
        file.sync_data()?;
    }
    batch.audit_written = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Record;
    use std::sync::atomic::Ordering;

    #[test]
    fn batches_complete_in_order_wake_the_loop_and_fail_whole() {
        let dir = std::env::temp_dir().join(format!(
            "login-node-worker-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let (db, _) = Db::open(&dir).expect("open");
        let audit_path = dir.join("audit.log");
        let audit = File::create(&audit_path).expect("audit");
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = woken.clone();
        let store = StoreThread::spawn(
            db,
            Some(audit),
            Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .expect("spawn");
        let fault = Arc::new(AtomicBool::new(true));
        store.inject_fault(fault.clone());
        let mut records = Vec::new();
        Record::Assign {
            serv: 1,
            cross: 10,
            pos: 1,
        }
        .encode(&mut records);
        let batch = Batch {
            seq: 1,
            records,
            audit: b"line one\n".to_vec(),
            audit_written: false,
            txns_written: 0,
            term: 0,
        };
        assert!(store.submit(batch));
        let Some(StoreEvent::Done(done)) = store.wait_event(Duration::from_secs(10)) else {
            panic!("no batch done");
        };
        assert!(done.result.is_err(), "the disk is full");
        assert_eq!(done.batch.seq, 1);
        assert!(done.batch.audit_written, "audit lines are written once");
        fault.store(false, Ordering::Relaxed);
        assert!(store.submit(done.batch));
        let Some(StoreEvent::Done(done)) = store.wait_event(Duration::from_secs(10)) else {
            panic!("no batch done");
        };
        done.result.expect("durable on retry");
        drop(store); // joins the thread: every wake has happened
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert_eq!(
            std::fs::read_to_string(&audit_path).expect("audit"),
            "line one\n"
        );
        let (_db, state) = Db::open(&dir).expect("reopen");
        assert_eq!(state.assignments[&1], (10, 1));
        std::fs::remove_dir_all(&dir).ok();
    }
}
