//! Logging for the binary: a buffered logger for the `log` facade, and a fast peer-address
//! formatter for log lines.
//!
//! Every connect, auth result, online and offline is logged, so at thousands of handshakes per
//! second logging is most of the node's user-space work. The logger keeps the formatted
//! date-and-time prefix for the current second (only the milliseconds change within it),
//! appends lines to one buffer, and writes the buffer once per poll-loop turn (the reactor
//! calls `log::logger().flush()`), or sooner when it passes 32 KiB.
//! Measured with callgrind over a churn run (connect, auth, info, close): logging was 74% of
//! the server's user-space instructions with simplelog; see docs/PERFORMANCE.md for the figures.

use log::{LevelFilter, Log, Metadata, Record};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const FLUSH_AT: usize = 32 * 1024;

struct State {
    buf: Vec<u8>,
    sink: Box<dyn Write + Send>,
    /// The second `stamp` was formatted for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`, UTC.
    stamp: [u8; 19],
}

/// A `log::Log` that buffers lines and writes them when flushed.
pub struct BufferedLogger {
    level: LevelFilter,
    state: Mutex<State>,
}

impl BufferedLogger {
    /// A logger writing lines at `level` or more severe to `sink`.
    pub fn new(level: LevelFilter, sink: Box<dyn Write + Send>) -> Self {
        BufferedLogger {
            level,
            state: Mutex::new(State {
                buf: Vec::with_capacity(FLUSH_AT * 2),
                sink,
                second: u64::MAX,
                stamp: [b'0'; 19],
            }),
        }
    }

    /// Installs a logger writing to stderr as the global logger.
    pub fn init_stderr(level: LevelFilter) -> Result<(), log::SetLoggerError> {
        log::set_boxed_logger(Box::new(BufferedLogger::new(
            level,
            Box::new(std::io::stderr()),
        )))?;
        log::set_max_level(level);
        Ok(())
    }

    fn write_out(state: &mut State) {
        if !state.buf.is_empty() {
            // Nowhere to report a failing log sink; drop the lines rather than stall the loop.
            let _ = state.sink.write_all(&state.buf);
            let _ = state.sink.flush();
            state.buf.clear();
        }
    }
}

fn level_tag(level: log::Level) -> &'static [u8] {
    match level {
        log::Level::Error => b"Z [ERROR] ",
        log::Level::Warn => b"Z [WARN] ",
        log::Level::Info => b"Z [INFO] ",
        log::Level::Debug => b"Z [DEBUG] ",
        log::Level::Trace => b"Z [TRACE] ",
    }
}

impl Log for BufferedLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let secs = now.as_secs();
        if secs != state.second {
            state.second = secs;
            state.stamp = utc_stamp(secs);
        }
        let stamp = state.stamp;
        let millis = now.subsec_millis();
        let buf = &mut state.buf;
        buf.extend_from_slice(&stamp);
        buf.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
        ]);
        buf.extend_from_slice(level_tag(record.level()));
        match record.args().as_str() {
            Some(s) => buf.extend_from_slice(s.as_bytes()),
            None => {
                let _ = buf.write_fmt(*record.args());
            }
        }
        buf.push(b'\n');
        if buf.len() >= FLUSH_AT {
            Self::write_out(&mut state);
        }
    }

    fn flush(&self) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        Self::write_out(&mut state);
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `time` (the audit log's stamps).
pub fn utc_stamp_string(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let b = utc_stamp(secs);
    format!("{}Z", String::from_utf8_lossy(&b))
}

/// `YYYY-MM-DDTHH:MM:SS` for unix seconds `secs`, UTC (proleptic Gregorian calendar).
fn utc_stamp(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00";
    let y = y.clamp(0, 9999) as u32;
    for (i, v) in [
        (0, y / 100),
        (2, y % 100),
        (5, m),
        (8, d),
        (11, (rem / 3600) as u32),
        (14, (rem / 60 % 60) as u32),
        (17, (rem % 60) as u32),
    ] {
        out[i] = b'0' + (v / 10) as u8;
        out[i + 1] = b'0' + (v % 10) as u8;
    }
    out
}

/// Year, month (1..=12), day (1..=31) of a day count since 1970-01-01: the days are shifted to
/// an era starting on 0000-03-01, so that leap days fall at the end of each 400-year era's
/// year and month lengths follow a fixed 153-day pattern.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Log lines show at most this many bytes of a string a peer sent.
pub const CLIP_BYTES: usize = 64;

/// A peer-supplied string for log lines: its first [`CLIP_BYTES`] bytes (cut at a character
/// boundary) and, when longer, its full length, so a 60 KB name costs the log a line, not 60 KB.
/// `{:?}` quotes and escapes like `str`'s `Debug`.
#[derive(Clone, Copy)]
pub struct Clip<'a>(pub &'a str);

impl Clip<'_> {
    fn head(&self) -> &str {
        let s = self.0;
        if s.len() <= CLIP_BYTES {
            return s;
        }
        let mut end = CLIP_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    }

    fn tail(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > CLIP_BYTES {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for Clip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.head())?;
        self.tail(f)
    }
}

impl fmt::Debug for Clip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.head(), f)?;
        self.tail(f)
    }
}

/// A peer address for log lines: IPv4 is formatted by hand (std's `Display` for socket
/// addresses was a quarter of all per-connection user-space instructions).
#[derive(Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SocketAddr::V4(v4) = self.0 else {
            return self.0.fmt(f);
        };
        // "255.255.255.255:65535" is 21 bytes.
        let mut b = [0u8; 21];
        let mut n = 0;
        for (i, o) in v4.ip().octets().iter().enumerate() {
            if i > 0 {
                b[n] = b'.';
                n += 1;
            }
            put_decimal(&mut b, &mut n, u32::from(*o));
        }
        b[n] = b':';
        n += 1;
        put_decimal(&mut b, &mut n, u32::from(v4.port()));
        // SAFETY: `b[..n]` holds only the ASCII digits, '.' and ':' written just above, so it
        // is valid UTF-8 (validating it cost more than formatting it).
        f.write_str(unsafe { std::str::from_utf8_unchecked(&b[..n]) })
    }
}

/// Appends `v` (at most 5 digits) in decimal at `b[*n..]`.
fn put_decimal(b: &mut [u8; 21], n: &mut usize, mut v: u32) {
    let mut digits = [0u8; 5];
    let mut k = 0;
    loop {
        digits[k] = b'0' + (v % 10) as u8;
        k += 1;
        v /= 10;
        if v == 0 || k == digits.len() {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        b[*n] = digits[k];
        *n += 1;
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    #[test]
    fn clip_shows_at_most_64_bytes_and_the_length() {
        assert_eq!(format!("{:?}", Clip("dev")), "\"dev\"");
        assert_eq!(Clip(&"x".repeat(64)).to_string(), "x".repeat(64));
        let long = "y".repeat(60_000);
        assert_eq!(
            format!("{:?}", Clip(&long)),
            format!("\"{}\"... (60000 bytes)", "y".repeat(64))
        );
        // A multi-byte character across the cut is left out whole.
        let wide = format!("{}é", "z".repeat(63));
        assert_eq!(
            Clip(&wide).to_string(),
            format!("{}... (65 bytes)", "z".repeat(63))
        );
    }

    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(&utc_stamp(0), b"1970-01-01T00:00:00");
        assert_eq!(&utc_stamp(1_700_000_000), b"2023-11-14T22:13:20");
        assert_eq!(&utc_stamp(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&utc_stamp(4_107_542_399), b"2100-02-28T23:59:59");
        assert_eq!(&utc_stamp(1_795_996_800), b"2026-11-30T00:00:00");
    }

    #[test]
    fn civil_dates_round_trip_over_centuries() {
        // Every day from 1900 to 2200 advances the date by one, month and year lengths included.
        let mut prev = civil_from_days(-25_567); // 1900-01-01
        assert_eq!(prev, (1900, 1, 1));
        for d in -25_566..84_000 {
            let cur = civil_from_days(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                cur == next_day || cur == next_month || cur == next_year,
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
    }

    #[test]
    fn peers_format_like_std() {
        for a in [
            "127.0.0.1:7700",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.1.2.3:80",
            "[::1]:9",
        ] {
            let addr: SocketAddr = a.parse().expect("addr");
            assert_eq!(Peer(addr).to_string(), addr.to_string());
        }
    }

    struct Shared(Arc<StdMutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_buffered_until_flushed_and_filtered_by_level() {
        let out = Arc::new(StdMutex::new(Vec::new()));
        let logger = BufferedLogger::new(LevelFilter::Info, Box::new(Shared(out.clone())));
        let peer = Peer("127.0.0.1:5".parse().expect("addr"));
        logger.log(
            &Record::builder()
                .level(log::Level::Info)
                .args(format_args!("conn {} from {peer}", 7))
                .build(),
        );
        logger.log(
            &Record::builder()
                .level(log::Level::Debug)
                .args(format_args!("hidden"))
                .build(),
        );
        assert!(
            out.lock().expect("lock").is_empty(),
            "nothing written before flush"
        );
        logger.flush();
        let text = String::from_utf8(out.lock().expect("lock").clone()).expect("utf8");
        assert!(
            text.ends_with("Z [INFO] conn 7 from 127.0.0.1:5\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
        assert_eq!(&text[4..5], "-");
        assert_eq!(&text[19..20], ".");
    }
}
