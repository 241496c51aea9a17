//! The state directory: `LOCK` (one process per directory) and `state.db`, an SQLite
//! database (bundled, through rusqlite) holding the [`super::keys`] in one table
//! `state(k TEXT PRIMARY KEY, v BLOB)`. WAL mode with `synchronous=FULL`: a commit is durable
//! when it returns (one fsync), a crash at any instant leaves the last committed transaction,
//! and readers never block the writer, so an operator can inspect and back up the live file
//! with Debian's `sqlite3` (`.backup`). SQLite checkpoints its WAL itself: nothing of ours to
//! compact. Files are 0600 (SQLite gives its WAL the database's mode), the directory 0700.

use super::keys::{self, Op};
use super::{legacy, record, Record, State};
use log::info;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The database file inside the state directory.
pub const DB_FILE: &str = "state.db";
/// Where a migration writes before the result is renamed to [`DB_FILE`].
const MIGRATING: &str = "state.db.migrating";
/// Present from a migration's rename until its old files are moved aside: a crash between
/// the two leaves a database *and* the files it came from, which is not a conflict.
const MIGRATED_MARK: &str = "state.db.migrated";

/// Why the state directory could not be opened; the node refuses to start.
#[derive(Debug)]
pub enum StoreError {
    /// An I/O or database error on a path.
    Io(PathBuf, io::Error),
    /// Another process holds the directory's lock.
    Locked(PathBuf),
    /// A file is corrupt.
    Corrupt(PathBuf, record::Corrupt),
    /// The stored state breaks an invariant.
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

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn other(e: rusqlite::Error) -> io::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            io::Error::from_raw_os_error(libc::ENOSPC)
        }
        e => io::Error::other(e),
    }
}

/// The open state directory.
pub struct Db {
    dir: PathBuf,
    conn: rusqlite::Connection,
    /// Fault injection for tests: while set, commits fail as a full disk would.
    fault: Option<Arc<AtomicBool>>,
    _lock: File,
}

fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens `path` as the state database, creating it (0600) if absent.
fn open_db(path: &Path) -> io::Result<rusqlite::Connection> {
    drop(create_private(path)?);
    let conn = rusqlite::Connection::open(path).map_err(other)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(other)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(io::Error::other(format!("journal_mode is {mode}, not wal")));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL) WITHOUT ROWID;",
    )
    .map_err(other)?;
    Ok(conn)
}

fn key_text(k: &[u8]) -> io::Result<&str> {
    std::str::from_utf8(k).map_err(|_| io::Error::other("a key is not UTF-8"))
}

/// The two statements every write uses: put (insert or replace) and delete, by key.
fn put_and_delete<'t>(
    tx: &'t rusqlite::Transaction<'_>,
) -> io::Result<(rusqlite::CachedStatement<'t>, rusqlite::CachedStatement<'t>)> {
    let put = tx
        .prepare_cached("INSERT OR REPLACE INTO state (k, v) VALUES (?1, ?2)")
        .map_err(other)?;
    let delete = tx
        .prepare_cached("DELETE FROM state WHERE k = ?1")
        .map_err(other)?;
    Ok((put, delete))
}

fn write_ops(conn: &mut rusqlite::Connection, ops: &[Op]) -> io::Result<()> {
    let tx = conn.transaction().map_err(other)?;
    {
        let (mut put, mut delete) = put_and_delete(&tx)?;
        for op in ops {
            match op {
                Op::Put(k, v) => put.execute((key_text(k)?, &v[..])).map_err(other)?,
                Op::Delete(k) => delete.execute([key_text(k)?]).map_err(other)?,
            };
        }
    }
    tx.commit().map_err(other)
}

/// Writes a batch as one transaction; the number of writes. A game node's whole entry is
/// written straight from the batch's bytes (its record's body is the key's value), once per
/// batch: only its last record counts (a new node's facts and then its slot are one row).
/// Other records go through [`keys::op`], in order. No record is decoded into owned strings
/// on the way: the store thread's share of a handshake (callgrind).
fn write_batch(conn: &mut rusqlite::Connection, batch: &[u8]) -> io::Result<usize> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("batch {why}"));
    // Each body once: a game node's entry checked and split (serv, value), or another record.
    let bodies = record::batch_bodies(batch)
        .map(|body| {
            let body = body.map_err(|c| bad(c.to_string()))?;
            match record::server_body(body) {
                Some(server) => server.map(Ok).map_err(bad),
                None => Ok(Err(body)),
            }
        })
        .collect::<io::Result<Vec<Result<(u32, &[u8]), &[u8]>>>>()?;
    // serv -> index of its last whole-entry record.
    let mut last: hashbrown::HashMap<u32, usize> = hashbrown::HashMap::new();
    for (i, body) in bodies.iter().enumerate() {
        if let Ok((serv, _)) = body {
            last.insert(*serv, i);
        }
    }
    let tx = conn.transaction().map_err(other)?;
    let mut writes = 0;
    {
        let (mut put, mut delete) = put_and_delete(&tx)?;
        let mut version = None;
        let mut key = keys::KeyBuf::default();
        for (i, body) in bodies.iter().enumerate() {
            let body = match *body {
                Ok((serv, value)) => {
                    if last.get(&serv) == Some(&i) {
                        put.execute((key.server(serv), value)).map_err(other)?;
                        writes += 1;
                    }
                    continue;
                }
                Err(body) => body,
            };
            let rec = Record::decode(body).map_err(bad)?;
            let (op, v) = keys::op(&rec);
            version = v.or(version);
            match op {
                Some(Op::Put(k, v)) => put.execute((key_text(&k)?, &v[..])).map_err(other)?,
                Some(Op::Delete(k)) => delete.execute([key_text(&k)?]).map_err(other)?,
                None => continue,
            };
            writes += 1;
        }
        if let Some(n) = version {
            let k = key_text(keys::WHITELIST_VERSION)?;
            put.execute((k, &n.to_be_bytes()[..])).map_err(other)?;
            writes += 1;
        }
    }
    tx.commit().map_err(other)?;
    Ok(writes)
}

impl Db {
    /// Opens (creating if needed) the state directory and loads it. A directory written by the
    /// journal of earlier versions is migrated first (see [`legacy`]).
    pub fn open(dir: &Path) -> Result<(Db, State), StoreError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |e| StoreError::Io(p, e)
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = create_private(&lock_path).map_err(io_err(&lock_path))?;
        // SAFETY: flock on a descriptor we own; it has no memory effects.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        let path = dir.join(DB_FILE);
        if !legacy::files(dir).is_empty() {
            if path.exists() && !dir.join(MIGRATED_MARK).exists() {
                // A journal beside a database that did not come from it (a rollback to the
                // old version wrote it): which one holds the truth is for an operator to say.
                return Err(StoreError::Inconsistent(
                    dir.to_path_buf(),
                    format!(
                        "both {DB_FILE} and a journal/snapshot of the earlier format are here; move one of them away (the journal is migrated only into a directory without {DB_FILE})"
                    ),
                ));
            }
            if !path.exists() {
                migrate(dir, &path)?;
            }
            // Migrated (now, or by a start that stopped before moving the old files).
            let aside = legacy::move_aside(dir, unix_secs())?;
            let _ = fs::remove_file(dir.join(MIGRATED_MARK));
            info!(
                "state {}: the journal and snapshot of the earlier format are migrated into {DB_FILE}; the old files are kept in {}",
                dir.display(),
                aside.display()
            );
        }
        let mut conn = open_db(&path).map_err(io_err(&path))?;
        let (state, split) = load(&conn).map_err(|e| match e {
            LoadError::Io(e) => StoreError::Io(path.clone(), e),
            LoadError::Bad(why) => StoreError::Inconsistent(path.clone(), why),
        })?;
        state
            .check()
            .map_err(|why| StoreError::Inconsistent(path.clone(), why))?;
        if !split.is_empty() {
            let pieces = split.len();
            let ops = rewrite_split_layout(&mut conn, &state, split).map_err(io_err(&path))?;
            info!(
                "state {}: {pieces} keys of the earlier layout (assign/, name/, game/) rewritten as one server/ key per game node ({} writes in one transaction)",
                path.display(),
                ops
            );
        }
        let db = Db {
            dir: dir.to_path_buf(),
            conn,
            fault: None,
            _lock: lock,
        };
        Ok((db, state))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes a batch of records (as the cluster encoded them) durable: one transaction of
    /// this many writes (keys put or deleted).
    pub fn commit(&mut self, records: &[u8]) -> io::Result<usize> {
        if self
            .fault
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        write_batch(&mut self.conn, records)
    }

    /// Test hook: while `switch` is true, every commit fails with ENOSPC (no disk is touched).
    #[doc(hidden)]
    pub fn inject_fault(&mut self, switch: Arc<AtomicBool>) {
        self.fault = Some(switch);
    }
}

enum LoadError {
    Io(io::Error),
    Bad(String),
}

/// Loads the whole state, in key order (see [`keys`]), and the keys of the earlier layout's
/// pieces it found (to be rewritten).
fn load(conn: &rusqlite::Connection) -> Result<(State, Vec<Vec<u8>>), LoadError> {
    let mut state = State::default();
    let mut split = Vec::new();
    let io = |e| LoadError::Io(other(e));
    let mut query = conn
        .prepare("SELECT k, v FROM state ORDER BY k")
        .map_err(io)?;
    let mut rows = query.query([]).map_err(io)?;
    while let Some(row) = rows.next().map_err(io)? {
        let k = row.get_ref(0).map_err(io)?;
        let k = k
            .as_str()
            .map_err(|e| LoadError::Bad(format!("a key is not text: {e}")))?;
        let v = row.get_ref(1).map_err(io)?;
        let v = v
            .as_blob()
            .map_err(|e| LoadError::Bad(format!("key {k:?}: {e}")))?;
        keys::load(&mut state, k.as_bytes(), v).map_err(LoadError::Bad)?;
        if keys::is_split_layout(k.as_bytes()) {
            split.push(k.as_bytes().to_vec());
        }
    }
    Ok((state, split))
}

/// Rewrites a store of the earlier layout (three keys per game node) as one `server/` key per
/// game node, in one transaction: a crash leaves the old layout or the new one, both readable.
fn rewrite_split_layout(
    conn: &mut rusqlite::Connection,
    state: &State,
    split: Vec<Vec<u8>>,
) -> io::Result<usize> {
    let mut ops: Vec<Op> = split.into_iter().map(Op::Delete).collect();
    ops.extend(
        state
            .servers()
            .filter_map(|s| keys::op(&Record::Server(s)).0),
    );
    write_ops(conn, &ops)?;
    Ok(ops.len())
}

/// Writes the legacy state of `dir` into a new database at `path`: built aside, synced, then
/// renamed into place, so a crash leaves either no database (the migration runs again) or a
/// whole one.
fn migrate(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let state = legacy::load(dir)?;
    let tmp = dir.join(MIGRATING);
    let io_err = |e| StoreError::Io(tmp.clone(), e);
    for stale in [
        tmp.clone(),
        dir.join(format!("{MIGRATING}-wal")),
        dir.join(format!("{MIGRATING}-shm")),
    ] {
        match fs::remove_file(&stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
    }
    {
        let mut conn = open_db(&tmp).map_err(io_err)?;
        write_ops(&mut conn, &keys::ops_of_state(&state)).map_err(io_err)?;
        // Everything into the main file, so the rename moves the whole database.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;")
            .map_err(|e| io_err(other(e)))?;
    }
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err)?;
    let mark = dir.join(MIGRATED_MARK);
    create_private(&mark)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Io(mark.clone(), e))?;
    sync_dir(dir).map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
    fs::rename(&tmp, path).map_err(io_err)?;
    sync_dir(dir).map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
    info!(
        "state {}: migrated {} assignments, {} whitelist entries (version {}) from the journal",
        dir.display(),
        state.assignments.len(),
        state.whitelist.len(),
        state.whitelist_version
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::record::{JOURNAL_MAGIC, RECORD_HEADER, SNAPSHOT_MAGIC};
    use crate::state::Record;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "login-node-db-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        records.iter().for_each(|r| r.encode(&mut out));
        out
    }

    fn assign(serv: u32, cross: u32, pos: u16) -> Record {
        Record::Assign { serv, cross, pos }
    }

    #[test]
    fn commits_survive_reopen_and_files_are_private() {
        let dir = temp_dir("reopen");
        {
            let (mut db, state) = Db::open(&dir).expect("open");
            assert_eq!(state, State::default());
            db.commit(&encode(&[assign(1, 10, 1)])).expect("commit");
            db.commit(&encode(&[assign(2, 10, 2), assign(1, 11, 1)]))
                .expect("commit");
        }
        let (_db, state) = Db::open(&dir).expect("reopen");
        assert_eq!(state.assignments[&1], (11, 1));
        assert_eq!(state.assignments[&2], (10, 2));
        for f in [DB_FILE, "LOCK"] {
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
    fn a_store_of_the_earlier_layout_is_rewritten_once_as_one_key_per_game_node() {
        let dir = temp_dir("split");
        let pieces = [
            assign(1, 10, 1),
            Record::Name {
                serv: 1,
                name: "one".into(),
            },
            assign(2, 10, 2),
        ];
        {
            let (mut db, _) = Db::open(&dir).expect("open");
            // What a store written before holds: three keys per game node.
            write_ops(&mut db.conn, &keys::ops(&pieces)).expect("write");
        }
        let mut expected = State::default();
        pieces.iter().for_each(|r| expected.apply(r));
        let rows = |db: &Db| -> Vec<String> {
            let mut q = db
                .conn
                .prepare("SELECT k FROM state ORDER BY k")
                .expect("query");
            let rows = q.query_map([], |r| r.get(0)).expect("rows");
            rows.map(|r| r.expect("row")).collect()
        };
        let (db, state) = Db::open(&dir).expect("reopen");
        assert_eq!(state, expected);
        assert_eq!(rows(&db), ["server/1", "server/2"]);
        drop(db);
        let (db, state) = Db::open(&dir).expect("reopen again");
        assert_eq!(state, expected);
        assert_eq!(rows(&db), ["server/1", "server/2"]);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_batch_writes_each_game_node_once_from_its_last_record_and_refuses_damage() {
        use crate::state::record::ServerRecord;
        use crate::state::GameFacts;
        let dir = temp_dir("batch");
        let entry = |serv, slot| {
            Record::Server(ServerRecord {
                serv,
                name: Some(format!("s{serv}").into()),
                facts: Some(GameFacts {
                    plat: "p".into(),
                    open_time: 7,
                    addr: "a:1".into(),
                }),
                slot,
            })
        };
        // A new node's facts, another node, the first one's slot; a whitelist entry added
        // and removed; a drain.
        let records = [
            entry(1, None),
            entry(2, Some((10, 2))),
            entry(1, Some((10, 1))),
            Record::WhitelistAdd {
                version: 1,
                entry: "x".into(),
            },
            Record::WhitelistRemove {
                version: 2,
                entry: "x".into(),
            },
            Record::Drain {
                cross: 10,
                on: true,
            },
        ];
        let mut expected = State::default();
        records.iter().for_each(|r| expected.apply(r));
        {
            let (mut db, _) = Db::open(&dir).expect("open");
            let mut batch = Vec::new();
            records.iter().for_each(|r| r.encode_in_batch(&mut batch));
            // Two game nodes, the entry put and deleted, the drain, the version.
            assert_eq!(db.commit(&batch).expect("commit"), 6);
            // A damaged entry fails the whole batch, nothing of it written.
            let mut bad = Vec::new();
            entry(3, Some((10, 3))).encode_in_batch(&mut bad);
            let last = bad.len() - 1;
            bad[RECORD_HEADER + 5] = 0x80; // unknown part flags
            bad.truncate(last);
            let err = db.commit(&bad).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
        let (_db, state) = Db::open(&dir).expect("reopen");
        assert_eq!(state, expected);
        assert_eq!(state.assignments[&1], (10, 1));
        assert!(!state.assignments.contains_key(&3));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_second_process_is_refused_by_the_lock() {
        let dir = temp_dir("lock");
        let _first = Db::open(&dir).expect("open");
        assert!(matches!(Db::open(&dir), Err(StoreError::Locked(_))));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_failed_commit_changes_nothing_and_a_retry_applies_it() {
        let dir = temp_dir("fault");
        let switch = Arc::new(AtomicBool::new(true));
        {
            let (mut db, _) = Db::open(&dir).expect("open");
            db.inject_fault(switch.clone());
            let batch = encode(&[assign(1, 10, 1)]);
            assert!(db.commit(&batch).is_err());
            switch.store(false, Ordering::Relaxed);
            db.commit(&batch).expect("retry");
        }
        let (_db, state) = Db::open(&dir).expect("reopen");
        assert_eq!(state.assignments[&1], (10, 1));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_legacy_journal_and_snapshot_are_migrated_once_and_kept_aside() {
        let dir = temp_dir("migrate");
        fs::create_dir_all(&dir).expect("dir");
        let mut old = State::default();
        old.assignments.insert(1, (10, 1));
        old.names.insert(1, "one".into());
        old.whitelist.insert("alice".into());
        old.whitelist_version = 4;
        let mut snap = SNAPSHOT_MAGIC.to_vec();
        old.encode_snapshot(&mut snap);
        fs::write(dir.join("snapshot"), &snap).expect("snapshot");
        let mut journal = JOURNAL_MAGIC.to_vec();
        let later = [
            assign(2, 10, 2),
            Record::WhitelistAdd {
                version: 5,
                entry: "bob".into(),
            },
            Record::Capacity {
                cross: 10,
                capacity: 9,
            },
        ];
        later.iter().for_each(|r| r.encode(&mut journal));
        // A torn last record (a crash mid-append) is dropped, as the journal always did.
        let mut torn = Vec::new();
        assign(3, 10, 3).encode(&mut torn);
        journal.extend_from_slice(&torn[..torn.len() - 2]);
        fs::write(dir.join("journal"), &journal).expect("journal");

        let mut expected = old.clone();
        later.iter().for_each(|r| expected.apply(r));
        let (_db, state) = Db::open(&dir).expect("migrates");
        assert_eq!(state, expected);
        assert!(legacy::files(&dir).is_empty(), "old files moved aside");
        let aside: Vec<_> = fs::read_dir(&dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("migrated-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            fs::read(aside[0].path().join("journal")).expect("kept"),
            journal
        );
        drop(_db);
        let (_db, again) = Db::open(&dir).expect("reopens without migrating again");
        assert_eq!(again, expected);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_migration_interrupted_before_the_rename_runs_again() {
        let dir = temp_dir("migrate-crash");
        fs::create_dir_all(&dir).expect("dir");
        let mut journal = JOURNAL_MAGIC.to_vec();
        assign(1, 10, 1).encode(&mut journal);
        fs::write(dir.join("journal"), &journal).expect("journal");
        fs::write(dir.join(MIGRATING), b"half a database").expect("partial");
        let (_db, state) = Db::open(&dir).expect("migrates");
        assert_eq!(state.assignments[&1], (10, 1));
        assert!(!dir.join(MIGRATING).exists());
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_journal_that_reappears_beside_a_database_stops_the_start() {
        let dir = temp_dir("reappear");
        {
            let (mut db, _) = Db::open(&dir).expect("open");
            db.commit(&encode(&[assign(1, 10, 1)])).expect("commit");
        }
        let mut journal = JOURNAL_MAGIC.to_vec();
        assign(2, 10, 2).encode(&mut journal);
        fs::write(dir.join("journal"), &journal).expect("journal");
        let err = Db::open(&dir).err().expect("refuses");
        assert!(err.to_string().contains("move one of them away"), "{err}");
        assert!(dir.join("journal").exists(), "nothing moved");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_corrupt_legacy_journal_names_file_and_offset() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).expect("dir");
        let mut journal = JOURNAL_MAGIC.to_vec();
        assign(1, 10, 1).encode(&mut journal);
        assign(2, 10, 2).encode(&mut journal);
        journal[8 + record::RECORD_HEADER + 1] ^= 0xFF;
        fs::write(dir.join("journal"), &journal).expect("journal");
        let err = Db::open(&dir).err().expect("refuses to start");
        let text = err.to_string();
        assert!(
            text.contains("journal") && text.contains("offset 8"),
            "{text}"
        );
        assert!(!dir.join(DB_FILE).exists(), "nothing migrated");
        fs::remove_dir_all(&dir).ok();
    }
}
