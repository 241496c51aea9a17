//! The state directory on disk: `LOCK`, `snapshot`, `journal` (and `snapshot.tmp` while
//! compacting). Files are created 0600, the directory 0700.

use super::record::{self, Record, JOURNAL_MAGIC, SNAPSHOT_MAGIC};
use super::State;
use log::{info, warn};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The journal is compacted once it is this large and larger than the last snapshot.
pub const COMPACT_AT: u64 = 16 << 20;

/// Why the state directory could not be opened; the node refuses to start.
#[derive(Debug)]
pub enum StoreError {
    /// An I/O error on a path.
    Io(PathBuf, io::Error),
    /// Another process holds the directory's lock.
    Locked(PathBuf),
    /// A file is corrupt (not merely torn at its end).
    Corrupt(PathBuf, record::Corrupt),
    /// The replayed state breaks an invariant.
    Inconsistent(PathBuf, String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(p, e) => write!(f, "state {}: {e}", p.display()),
            StoreError::Locked(p) => write!(
                f,
                "state {}: locked by another login node process (one state directory per process)",
                p.display()
            ),
            StoreError::Corrupt(p, c) => write!(
                f,
                "state {}: {c}; refusing to start rather than forget state (restore the file from a backup, or move it away to start empty)",
                p.display()
            ),
            StoreError::Inconsistent(p, why) => write!(f, "state {}: {why}", p.display()),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(path.to_path_buf(), e)
}

/// The open state directory.
pub struct Store {
    dir: PathBuf,
    journal: File,
    journal_len: u64,
    snapshot_len: u64,
    compact_at: u64,
    /// What is durable, mirrored so a compaction writes exactly that.
    durable: State,
    /// Fault injection for tests: while set, commits fail as a full disk would.
    fault: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    _lock: File,
}

fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Store {
    /// Opens (creating if needed) the state directory and replays it.
    pub fn open(dir: &Path) -> Result<(Store, State), StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = open_private(&lock_path, false).map_err(io_err(&lock_path))?;
        // SAFETY: flock on a descriptor we own; it has no memory effects.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }

        let snap_path = dir.join("snapshot");
        let mut state = State::default();
        let mut snapshot_len = 0;
        match fs::read(&snap_path) {
            Ok(bytes) => {
                snapshot_len = bytes.len() as u64;
                let scan = record::scan(&bytes, SNAPSHOT_MAGIC)
                    .map_err(|c| StoreError::Corrupt(snap_path.clone(), c))?;
                // Snapshots are renamed into place whole: any tear is corruption.
                let complete = scan.torn_at.is_none()
                    && matches!(scan.records.last(), Some(Record::End { count }) if *count as usize + 1 == scan.records.len());
                if !complete {
                    return Err(StoreError::Corrupt(
                        snap_path,
                        record::Corrupt {
                            offset: scan.valid_len,
                            why: "snapshot is incomplete (no end record)".into(),
                        },
                    ));
                }
                state = State::load_snapshot(&scan.records);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io(snap_path, e)),
        }

        let journal_path = dir.join("journal");
        let journal_len;
        let journal = match fs::read(&journal_path) {
            Ok(bytes) => {
                let scan = record::scan(&bytes, JOURNAL_MAGIC)
                    .map_err(|c| StoreError::Corrupt(journal_path.clone(), c))?;
                let file = open_private(&journal_path, false).map_err(io_err(&journal_path))?;
                if let Some(at) = scan.torn_at {
                    warn!(
                        "state {}: dropping a torn record at offset {at} ({} bytes; a crash mid-write)",
                        journal_path.display(),
                        bytes.len() as u64 - at
                    );
                }
                journal_len = if scan.valid_len < JOURNAL_MAGIC.len() as u64 {
                    file.write_all_at(JOURNAL_MAGIC, 0)
                        .map_err(io_err(&journal_path))?;
                    JOURNAL_MAGIC.len() as u64
                } else {
                    scan.valid_len
                };
                if bytes.len() as u64 != journal_len {
                    file.set_len(journal_len).map_err(io_err(&journal_path))?;
                    file.sync_all().map_err(io_err(&journal_path))?;
                }
                for r in &scan.records {
                    state.apply(r);
                }
                info!(
                    "state {}: replayed snapshot ({snapshot_len} bytes) and {} journal records",
                    dir.display(),
                    scan.records.len()
                );
                file
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut file = open_private(&journal_path, true).map_err(io_err(&journal_path))?;
                file.write_all(JOURNAL_MAGIC)
                    .and_then(|_| file.sync_all())
                    .and_then(|_| sync_dir(dir))
                    .map_err(io_err(&journal_path))?;
                journal_len = JOURNAL_MAGIC.len() as u64;
                file
            }
            Err(e) => return Err(StoreError::Io(journal_path, e)),
        };
        state
            .check()
            .map_err(|why| StoreError::Inconsistent(dir.to_path_buf(), why))?;
        let store = Store {
            dir: dir.to_path_buf(),
            journal,
            journal_len,
            snapshot_len,
            compact_at: COMPACT_AT,
            durable: state.clone(),
            fault: None,
            _lock: lock,
        };
        Ok((store, state))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in the journal file.
    pub fn journal_len(&self) -> u64 {
        self.journal_len
    }

    /// Sets the journal size that triggers a compaction (tests use small values).
    pub fn set_compact_at(&mut self, bytes: u64) {
        self.compact_at = bytes;
    }

    /// Appends encoded records and makes them durable (one write, one `fdatasync`). On error
    /// the file is cut back to its last durable length, so a retry appends whole records.
    pub fn commit(&mut self, records: &[u8]) -> io::Result<()> {
        if let Some(f) = &self.fault {
            if f.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let result = self
            .journal
            .write_all_at(records, self.journal_len)
            .and_then(|_| self.journal.sync_data());
        if let Err(e) = result {
            let _ = self.journal.set_len(self.journal_len);
            return Err(e);
        }
        self.journal_len += records.len() as u64;
        // The records were produced by this process: they scan cleanly.
        let mut bytes = JOURNAL_MAGIC.to_vec();
        bytes.extend_from_slice(records);
        if let Ok(scan) = record::scan(&bytes, JOURNAL_MAGIC) {
            for r in &scan.records {
                self.durable.apply(r);
            }
        }
        Ok(())
    }

    /// Test hook: while `switch` is true, every commit fails with ENOSPC (no disk is touched).
    #[doc(hidden)]
    pub fn inject_fault(&mut self, switch: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.fault = Some(switch);
    }

    /// True when the journal has grown past the compaction bound.
    pub fn wants_compaction(&self) -> bool {
        self.journal_len > self.compact_at.max(self.snapshot_len)
    }

    /// Writes the durable state as a new snapshot (temp file, fsync, rename, fsync the
    /// directory), then empties the journal. A crash at any point leaves a replayable pair:
    /// the journal's records are idempotent over a snapshot that already holds them.
    pub fn compact(&mut self) -> io::Result<()> {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        self.durable.encode_snapshot(&mut bytes);
        let tmp = self.dir.join("snapshot.tmp");
        {
            let mut f = open_private(&tmp, true)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join("snapshot"))?;
        sync_dir(&self.dir)?;
        self.journal.set_len(JOURNAL_MAGIC.len() as u64)?;
        self.journal.sync_all()?;
        info!(
            "state {}: compacted a {} byte journal into a {} byte snapshot",
            self.dir.display(),
            self.journal_len,
            bytes.len()
        );
        self.journal_len = JOURNAL_MAGIC.len() as u64;
        self.snapshot_len = bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "login-node-store-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            r.encode(&mut out);
        }
        out
    }

    fn assign(serv: u32, cross: u32, pos: u16) -> Record {
        Record::Assign { serv, cross, pos }
    }

    #[test]
    fn commits_survive_reopen_and_files_are_private() {
        let dir = temp_dir("reopen");
        {
            let (mut store, state) = Store::open(&dir).expect("open");
            assert_eq!(state, State::default());
            store.commit(&encode(&[assign(1, 10, 1)])).expect("commit");
            store
                .commit(&encode(&[assign(2, 10, 2), assign(1, 11, 1)]))
                .expect("commit");
        }
        let (_store, state) = Store::open(&dir).expect("reopen");
        assert_eq!(state.assignments[&1], (11, 1));
        assert_eq!(state.assignments[&2], (10, 2));
        for f in ["journal", "LOCK"] {
            let mode = fs::metadata(dir.join(f))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_second_process_is_refused_by_the_lock() {
        let dir = temp_dir("lock");
        let _first = Store::open(&dir).expect("open");
        assert!(matches!(Store::open(&dir), Err(StoreError::Locked(_))));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_torn_tail_is_dropped_and_appends_continue_after_it() {
        let dir = temp_dir("torn");
        {
            let (mut store, _) = Store::open(&dir).expect("open");
            store.commit(&encode(&[assign(1, 10, 1)])).expect("commit");
        }
        let mut torn = encode(&[assign(2, 10, 2)]);
        torn.truncate(torn.len() - 3);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .expect("journal");
        f.write_all(&torn).expect("append");
        drop(f);
        {
            let (mut store, state) = Store::open(&dir).expect("torn tail is not fatal");
            assert_eq!(state.assignments.len(), 1);
            store.commit(&encode(&[assign(3, 10, 3)])).expect("commit");
        }
        let (_, state) = Store::open(&dir).expect("reopen");
        assert_eq!(state.assignments.len(), 2);
        assert_eq!(state.assignments[&3], (10, 3));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corruption_in_the_middle_names_file_and_offset() {
        let dir = temp_dir("corrupt");
        {
            let (mut store, _) = Store::open(&dir).expect("open");
            store
                .commit(&encode(&[assign(1, 10, 1), assign(2, 10, 2)]))
                .expect("commit");
        }
        let path = dir.join("journal");
        let mut bytes = fs::read(&path).expect("read");
        bytes[8 + record::RECORD_HEADER + 1] ^= 0xFF;
        fs::write(&path, &bytes).expect("write");
        let err = Store::open(&dir).err().expect("refuses to start");
        let text = err.to_string();
        assert!(
            text.contains("journal") && text.contains("offset 8"),
            "{text}"
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn compaction_keeps_everything_and_a_crash_before_truncation_is_harmless() {
        let dir = temp_dir("compact");
        let journal_before;
        {
            let (mut store, _) = Store::open(&dir).expect("open");
            store.set_compact_at(0);
            for i in 0..100u32 {
                let recs = [
                    assign(i, 10 + i % 3, (i / 3 + 1) as u16),
                    Record::WhitelistAdd {
                        version: i + 1,
                        entry: format!("p{i}").into(),
                    },
                ];
                store.commit(&encode(&recs)).expect("commit");
            }
            journal_before = fs::read(dir.join("journal")).expect("journal");
            assert!(store.wants_compaction());
            store.compact().expect("compact");
            assert_eq!(store.journal_len(), 8);
        }
        let (_, compacted) = Store::open(&dir).expect("reopen");
        assert_eq!(compacted.assignments.len(), 100);
        assert_eq!(compacted.whitelist.len(), 100);
        assert_eq!(compacted.whitelist_version, 100);
        // A crash after the rename but before the journal was emptied: same state.
        fs::write(dir.join("journal"), &journal_before).expect("restore old journal");
        let (_, replayed) = Store::open(&dir).expect("reopen");
        assert_eq!(replayed, compacted);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_snapshot_without_its_end_record_is_corrupt() {
        let dir = temp_dir("snapend");
        {
            let (mut store, _) = Store::open(&dir).expect("open");
            store.commit(&encode(&[assign(1, 10, 1)])).expect("commit");
            store.compact().expect("compact");
        }
        let path = dir.join("snapshot");
        let mut bytes = fs::read(&path).expect("read");
        bytes.truncate(bytes.len() - 20);
        fs::write(&path, &bytes).expect("write");
        let err = Store::open(&dir).err().expect("refuses");
        assert!(err.to_string().contains("snapshot"), "{err}");
        fs::remove_dir_all(&dir).ok();
    }
}
