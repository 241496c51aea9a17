//! The state directory of earlier versions (`snapshot` + `journal` of [`super::record`]s), read
//! once when a node first starts on the database: its state is written into the database,
//! then the old files are moved aside (never deleted) and named in the log.

use super::record::{self, JOURNAL_MAGIC, SNAPSHOT_MAGIC};
use super::{Record, State, StoreError};
use log::warn;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The legacy files of `dir` that exist (snapshot first).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    ["snapshot", "journal"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect()
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io(path.to_path_buf(), e)),
    }
}

/// Replays the legacy files of `dir` (a torn last journal record is dropped with a warning,
/// corruption anywhere else is an error naming file and offset).
pub fn load(dir: &Path) -> Result<State, StoreError> {
    let snap_path = dir.join("snapshot");
    let mut state = State::default();
    if let Some(bytes) = read(&snap_path)? {
        let scan = record::scan(&bytes, SNAPSHOT_MAGIC)
            .map_err(|c| StoreError::Corrupt(snap_path.clone(), c))?;
        // Snapshots were renamed into place whole: any tear is corruption.
        let complete = scan.torn_at.is_none()
            && matches!(scan.records.last(), Some(Record::End { count }) if *count as usize + 1 == scan.records.len());
        if !complete {
            let why = "snapshot is incomplete (no end record)".into();
            let offset = scan.valid_len;
            return Err(StoreError::Corrupt(
                snap_path,
                record::Corrupt { offset, why },
            ));
        }
        state = State::load_snapshot(&scan.records);
    }
    let journal_path = dir.join("journal");
    if let Some(bytes) = read(&journal_path)? {
        let scan = record::scan(&bytes, JOURNAL_MAGIC)
            .map_err(|c| StoreError::Corrupt(journal_path.clone(), c))?;
        if let Some(at) = scan.torn_at {
            warn!(
                "state {}: dropping a torn record at offset {at} ({} bytes; a crash mid-write)",
                journal_path.display(),
                bytes.len() as u64 - at
            );
        }
        scan.records.iter().for_each(|r| state.apply(r));
    }
    state
        .check()
        .map_err(|why| StoreError::Inconsistent(dir.to_path_buf(), why))?;
    Ok(state)
}

/// Moves the legacy files into `dir/migrated-<unix secs>/`; returns where they went.
pub fn move_aside(dir: &Path, unix_secs: u64) -> Result<PathBuf, StoreError> {
    let aside = dir.join(format!("migrated-{unix_secs}"));
    fs::create_dir_all(&aside).map_err(|e| StoreError::Io(aside.clone(), e))?;
    for f in files(dir) {
        let Some(name) = f.file_name() else { continue };
        let to = aside.join(name);
        fs::rename(&f, &to).map_err(|e| StoreError::Io(f.clone(), e))?;
    }
    let sync = |p: &Path| fs::File::open(p).and_then(|f| f.sync_all());
    sync(&aside)
        .and_then(|_| sync(dir))
        .map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
    Ok(aside)
}
