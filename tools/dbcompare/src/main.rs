//! dbbench: redb vs SQLite (WAL) as the login node's durable key/value store.
//!
//! One KV space, short byte-string keys, small values (the key model the etcd
//! backend will share):
//!   a/<serv_id>  -> cross_server_id u32 LE + cross_pos u16 LE
//!   n/<serv_id>  -> serv_name (10-20 bytes)
//!   g/<serv_id>  -> game node platform
//!   c/<cross_id> -> cross record (u8 len + name, u8 len + plat, u16 LE capacity)
//!   w/<entry>    -> empty (whitelist entry)
//!   wv           -> whitelist version u32 LE
//!
//! Every write is one transaction committed durably (fsync before commit returns),
//! written from one thread, as the store thread will do once per poll-loop turn.
//!
//! Usage: dbbench <commit|populate|startup|dirty> <backend> <dir>
//!   backend: redb | redb-qr (quick_repair on) | sqlite-full | sqlite-normal

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Kv = (Vec<u8>, Vec<u8>);
type Res<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------- backends

trait Store {
    /// Applies `kvs` (upserts) in one write transaction and commits it.
    /// Returns (time to apply the writes, time spent in commit).
    fn write(&mut self, kvs: &[Kv]) -> Res<(Duration, Duration)>;
    /// Calls `f` for every key/value pair.
    fn scan(&mut self, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<()>;
    /// Files belonging to the database, for size reports.
    fn files(&self) -> Vec<PathBuf>;
    /// Backend-specific tidy-up whose effect on size is worth reporting
    /// (SQLite: WAL checkpoint; redb: compaction). Returns a label.
    fn tidy(&mut self) -> Res<&'static str>;
}

const KV: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

struct Redb {
    db: redb::Database,
    path: PathBuf,
    quick_repair: bool,
}

impl Redb {
    fn open(dir: &Path, quick_repair: bool) -> Res<Self> {
        let path = dir.join("state.redb");
        let db = redb::Database::create(&path)?;
        let mut s = Redb { db, path, quick_repair };
        s.write(&[])?; // make sure the table exists
        Ok(s)
    }
}

impl Store for Redb {
    fn write(&mut self, kvs: &[Kv]) -> Res<(Duration, Duration)> {
        let t0 = Instant::now();
        let mut tx = self.db.begin_write()?;
        // Durability::Immediate is the default: commit() returns after fsync.
        tx.set_quick_repair(self.quick_repair);
        {
            let mut t = tx.open_table(KV)?;
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice())?;
            }
        }
        let t1 = Instant::now();
        tx.commit()?;
        Ok((t1 - t0, t1.elapsed()))
    }

    fn scan(&mut self, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<()> {
        use redb::{ReadableDatabase, ReadableTable};
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(KV)?;
        for item in t.iter()? {
            let (k, v) = item?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn tidy(&mut self) -> Res<&'static str> {
        self.db.compact()?;
        Ok("after Database::compact()")
    }
}

struct Sqlite {
    conn: rusqlite::Connection,
    path: PathBuf,
}

impl Sqlite {
    fn open(dir: &Path, synchronous: &str) -> Res<Self> {
        let path = dir.join("state.sqlite");
        let conn = rusqlite::Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
        )?;
        Ok(Sqlite { conn, path })
    }
}

impl Store for Sqlite {
    fn write(&mut self, kvs: &[Kv]) -> Res<(Duration, Duration)> {
        let t0 = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            )?;
            for (k, v) in kvs {
                st.execute((k.as_slice(), v.as_slice()))?;
            }
        }
        let t1 = Instant::now();
        tx.commit()?;
        Ok((t1 - t0, t1.elapsed()))
    }

    fn scan(&mut self, f: &mut dyn FnMut(&[u8], &[u8])) -> Res<()> {
        let mut st = self.conn.prepare("SELECT k, v FROM kv")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            f(r.get_ref(0)?.as_blob()?, r.get_ref(1)?.as_blob()?);
        }
        Ok(())
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        vec![self.path.clone(), wal.into()]
    }

    fn tidy(&mut self) -> Res<&'static str> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok("after PRAGMA wal_checkpoint(TRUNCATE)")
    }
}

fn open_store(backend: &str, dir: &Path) -> Res<Box<dyn Store>> {
    std::fs::create_dir_all(dir)?;
    Ok(match backend {
        "redb" => Box::new(Redb::open(dir, false)?),
        "redb-qr" => Box::new(Redb::open(dir, true)?),
        "sqlite-full" => Box::new(Sqlite::open(dir, "FULL")?),
        "sqlite-normal" => Box::new(Sqlite::open(dir, "NORMAL")?),
        other => return Err(format!("unknown backend {other}").into()),
    })
}

// ---------------------------------------------------------------- key model

fn key(prefix: &str, id: impl std::fmt::Display) -> Vec<u8> {
    format!("{prefix}/{id}").into_bytes()
}

fn assign_val(cross: u32, pos: u16) -> Vec<u8> {
    let mut v = cross.to_le_bytes().to_vec();
    v.extend_from_slice(&pos.to_le_bytes());
    v
}

/// 12 to 20 bytes.
fn serv_name(id: u32) -> String {
    format!("game-{id:07}{}", &"abcdefgh"[..(id % 9) as usize])
}

const PLATS: [&str; 4] = ["android", "ios", "pc", "web"];

fn cross_val(id: u32) -> Vec<u8> {
    let name = format!("cross-{id:05}");
    let plat = PLATS[(id % 4) as usize];
    let mut v = vec![name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.push(plat.len() as u8);
    v.extend_from_slice(plat.as_bytes());
    v.extend_from_slice(&500u16.to_le_bytes());
    v
}

fn white_entry(i: u64) -> String {
    format!("acct{i:010}")
}

/// Cross node count for `n` game nodes (500 game nodes per cross node).
fn crosses_for(n: u32) -> u32 {
    n.div_ceil(500)
}

/// All records of game node `id`: assignment, name, platform.
fn game_records(id: u32, nc: u32, out: &mut Vec<Kv>) {
    let cross = id % nc + 1;
    out.push((key("a", id), assign_val(cross, (id / nc % 500) as u16)));
    out.push((key("n", id), serv_name(id).into_bytes()));
    out.push((key("g", id), PLATS[(cross % 4) as usize].as_bytes().to_vec()));
}

/// Writes `games` game nodes, their cross nodes and `white` whitelist entries
/// (starting at `white_from`) in transactions of at most `chunk` records.
fn seed(s: &mut dyn Store, games: u32, white: u64, chunk: usize) -> Res<()> {
    let nc = crosses_for(games);
    let mut batch: Vec<Kv> = (1..=nc).map(|c| (key("c", c), cross_val(c))).collect();
    for id in 1..=games {
        game_records(id, nc, &mut batch);
        if batch.len() >= chunk {
            s.write(&batch)?;
            batch.clear();
        }
    }
    for i in 0..white {
        batch.push((key("w", white_entry(i)), Vec::new()));
        if batch.len() >= chunk {
            s.write(&batch)?;
            batch.clear();
        }
    }
    batch.push((b"wv".to_vec(), 1u32.to_le_bytes().to_vec()));
    s.write(&batch)?;
    Ok(())
}

#[derive(Default)]
struct Cross {
    name: String,
    plat: String,
    capacity: u16,
}

/// What the login node holds in memory after start-up.
#[derive(Default)]
struct State {
    assign: HashMap<u32, (u32, u16)>,
    names: HashMap<u32, String>,
    plats: HashMap<u32, String>,
    crosses: HashMap<u32, Cross>,
    white: HashSet<String>,
    wv: u32,
    unknown: usize,
}

fn parse_id(b: &[u8]) -> Option<u32> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl State {
    fn apply(&mut self, k: &[u8], v: &[u8]) {
        let ok = match k {
            [b'a', b'/', id @ ..] if v.len() == 6 => parse_id(id).map(|id| {
                let c = u32::from_le_bytes(v[..4].try_into().unwrap());
                let p = u16::from_le_bytes(v[4..].try_into().unwrap());
                self.assign.insert(id, (c, p));
            }),
            [b'n', b'/', id @ ..] => parse_id(id).map(|id| {
                self.names.insert(id, utf8(v));
            }),
            [b'g', b'/', id @ ..] => parse_id(id).map(|id| {
                self.plats.insert(id, utf8(v));
            }),
            [b'c', b'/', id @ ..] => parse_id(id).and_then(|id| {
                let nl = *v.first()? as usize;
                let name = utf8(v.get(1..1 + nl)?);
                let pl = *v.get(1 + nl)? as usize;
                let plat = utf8(v.get(2 + nl..2 + nl + pl)?);
                let cap = v.get(2 + nl + pl..4 + nl + pl)?;
                let capacity = u16::from_le_bytes(cap.try_into().ok()?);
                self.crosses.insert(id, Cross { name, plat, capacity });
                Some(())
            }),
            [b'w', b'/', e @ ..] => {
                self.white.insert(utf8(e));
                Some(())
            }
            b"wv" if v.len() == 4 => {
                self.wv = u32::from_le_bytes(v.try_into().unwrap());
                Some(())
            }
            _ => None,
        };
        if ok.is_none() {
            self.unknown += 1;
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Small deterministic PRNG (xorshift64*), so runs are repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % n as u64) as u32
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report_latencies(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{label:<28} n={:<4} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        v.len(),
        ms(pct(&v, 0.50)),
        ms(pct(&v, 0.99)),
        ms(*v.last().unwrap())
    );
}

fn file_sizes(s: &dyn Store) -> String {
    let mut total = 0u64;
    let mut parts = Vec::new();
    for f in s.files() {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        total += len;
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        parts.push(format!("{name}={:.1} MiB", len as f64 / 1048576.0));
    }
    format!("{} (total {:.1} MiB)", parts.join(" "), total as f64 / 1048576.0)
}

fn fresh_dir(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

// ---------------------------------------------------------------- commands

/// Seeds 100,000 game nodes, then measures durable commits of 1 and of 500
/// records (300 each), then one transaction of 100,000 whitelist entries.
fn cmd_commit(backend: &str, dir: &Path, rounds: usize) -> Res<()> {
    const GAMES: u32 = 100_000;
    fresh_dir(dir)?;
    let mut s = open_store(backend, dir)?;
    let t = Instant::now();
    seed(s.as_mut(), GAMES, 0, 10_000)?;
    println!("seeded {GAMES} game nodes in {:.2} s", t.elapsed().as_secs_f64());
    let nc = crosses_for(GAMES);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    for size in [1usize, 500] {
        let (mut total, mut commit) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let mut batch = Vec::with_capacity(size);
            while batch.len() < size {
                // ids up to 110% of the seeded range: mostly updates, some inserts
                let id = rng.below(GAMES + GAMES / 10) + 1;
                let pos = rng.below(500) as u16;
                batch.push((key("a", id), assign_val(rng.below(nc) + 1, pos)));
                if batch.len() < size {
                    batch.push((key("n", id), serv_name(id + pos as u32).into_bytes()));
                }
            }
            let (apply, c) = s.write(&batch)?;
            total.push(apply + c);
            commit.push(c);
        }
        report_latencies(&format!("{size} rec: txn total"), total);
        report_latencies(&format!("{size} rec: commit()"), commit);
    }

    let batch: Vec<Kv> = (0..100_000u64)
        .map(|i| (key("w", white_entry(i)), Vec::new()))
        .chain([(b"wv".to_vec(), 2u32.to_le_bytes().to_vec())])
        .collect();
    let (apply, c) = s.write(&batch)?;
    println!(
        "100k whitelist txn: total={:.1} ms (apply {:.1} ms + commit() {:.1} ms)",
        ms(apply + c),
        ms(apply),
        ms(c)
    );
    println!("files: {}", file_sizes(s.as_ref()));
    Ok(())
}

/// Creates the start-up database: 1,000,000 game nodes (assignment, name,
/// platform), their 2,000 cross nodes, and a 100,000-entry whitelist.
fn cmd_populate(backend: &str, dir: &Path) -> Res<()> {
    fresh_dir(dir)?;
    let mut s = open_store(backend, dir)?;
    let t = Instant::now();
    seed(s.as_mut(), 1_000_000, 100_000, 100_000)?;
    println!("populated in {:.1} s", t.elapsed().as_secs_f64());
    println!("files: {}", file_sizes(s.as_ref()));
    let label = s.tidy()?;
    println!("files {label}: {}", file_sizes(s.as_ref()));
    drop(s);
    Ok(())
}

/// Opens the database and reads everything into HashMaps.
fn cmd_startup(backend: &str, dir: &Path) -> Res<()> {
    let t0 = Instant::now();
    let mut s = open_store(backend, dir)?;
    let t1 = Instant::now();
    let mut st = State::default();
    s.scan(&mut |k, v| st.apply(k, v))?;
    let t2 = Instant::now();
    println!(
        "startup: open={:.1} ms  read into HashMaps={:.1} ms  total={:.1} ms",
        ms(t1 - t0),
        ms(t2 - t1),
        ms(t2 - t0)
    );
    drop(s);
    let t3 = Instant::now();
    println!("close db={:.1} ms (not part of start-up)", ms(t3 - t2));
    let plat_check = st.crosses.values().filter(|c| c.capacity > 0 && !c.plat.is_empty()).count();
    let named = st.crosses.values().filter(|c| !c.name.is_empty()).count();
    println!(
        "loaded: assign={} names={} plats={} crosses={} (named {named}, ok {plat_check}) white={} wv={} unknown={}",
        st.assign.len(),
        st.names.len(),
        st.plats.len(),
        st.crosses.len(),
        st.white.len(),
        st.wv,
        st.unknown
    );
    Ok(())
}

/// Commits one record and exits without closing the database, as a crash
/// would: the next open has to recover.
fn cmd_dirty(backend: &str, dir: &Path) -> Res<()> {
    let mut s = open_store(backend, dir)?;
    s.write(&[(key("a", 1), assign_val(1, 0))])?;
    std::process::exit(0); // skips Drop: no clean shutdown
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: dbbench <commit|populate|startup|dirty> <backend> <dir> [rounds]");
        eprintln!("backends: redb redb-qr sqlite-full sqlite-normal");
        std::process::exit(2);
    }
    let (cmd, backend, dir) = (&args[1], &args[2], Path::new(&args[3]));
    let rounds = args.get(4).map(|r| r.parse().expect("rounds")).unwrap_or(300);
    println!("== {cmd} {backend} {}", dir.display());
    let r = match cmd.as_str() {
        "commit" => cmd_commit(backend, dir, rounds),
        "populate" => cmd_populate(backend, dir),
        "startup" => cmd_startup(backend, dir),
        "dirty" => cmd_dirty(backend, dir),
        _ => Err(format!("unknown command {cmd}").into()),
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
