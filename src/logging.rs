//! Logging for the binary: `simplelog`'s `WriteLogger` over a buffered, timestamping stderr
//! sink, and cheap formatters for the parts of log lines a peer sends (addresses, names).
//!
//! Line format (docs/ADMIN.md, "Log lines"): `2026-12-01T07:53:06.123Z [INFO] message`. The
//! logger is configured lean (no thread, target or source location); the timestamp and the
//! level tag are written by the sink, which keeps the formatted date and time of the current
//! second and only adds the milliseconds, instead of a calendar conversion and a format
//! description per line ([`Leveled`] tells it the level).
//! Lines collect in one buffer that the reactor writes out once per poll-loop turn, before it
//! blocks (`log::logger().flush()`), or sooner when it passes 32 KiB.

use log::LevelFilter;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

const FLUSH_AT: usize = 32 * 1024;

/// A `Write` sink for a line logger: opens every line with a UTC timestamp and buffers lines
/// until flushed (or 32 KiB are waiting).
pub struct StampedBuffer<W: Write> {
    buf: Vec<u8>,
    sink: W,
    /// Bytes of a line were written and its `\n` not yet.
    in_line: bool,
    /// The second `stamp` was formatted for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`, UTC.
    stamp: [u8; 19],
}

impl<W: Write> StampedBuffer<W> {
    /// A buffer over `sink`; nothing reaches `sink` before a flush or 32 KiB of lines.
    pub fn new(sink: W) -> Self {
        StampedBuffer {
            buf: Vec::with_capacity(FLUSH_AT * 2),
            sink,
            in_line: false,
            second: u64::MAX,
            stamp: [b'0'; 19],
        }
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ ` for now.
    fn open_line(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        if secs != self.second {
            self.second = secs;
            self.stamp = utc_stamp(secs);
        }
        self.buf.extend_from_slice(&self.stamp);
        self.buf
            .extend_from_slice(&thousandths(u64::from(now.subsec_millis())));
        self.buf.extend_from_slice(b"Z ");
        if let Some(level) = LINE_LEVEL.get() {
            self.buf.push(b'[');
            self.buf.extend_from_slice(level.as_str().as_bytes());
            self.buf.extend_from_slice(b"] ");
        }
    }

    fn write_out(&mut self) {
        if !self.buf.is_empty() {
            // Nowhere to report a failing log sink; drop the lines rather than stall the loop.
            let _ = self.sink.write_all(&self.buf);
            let _ = self.sink.flush();
            self.buf.clear();
        }
    }
}

/// `fmt::Write` straight into the line buffer (appending to a `Vec` cannot fail).
struct Append<'a>(&'a mut Vec<u8>);

impl fmt::Write for Append<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl<W: Write> StampedBuffer<W> {
    /// After bytes were appended: a line that ended may send the buffer out.
    fn appended(&mut self) {
        if self.buf.last() == Some(&b'\n') {
            self.in_line = false;
            if self.buf.len() >= FLUSH_AT {
                self.write_out();
            }
        }
    }
}

impl<W: Write> Write for StampedBuffer<W> {
    /// The logger formats through this: every piece of a line is appended to the buffer
    /// directly, not through `io::Write`'s error-keeping adapter and `write_all` per piece.
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        if !self.in_line {
            self.open_line();
            self.in_line = true;
        }
        match args.as_str() {
            Some(s) => self.buf.extend_from_slice(s.as_bytes()),
            None => {
                let _ = fmt::write(&mut Append(&mut self.buf), args);
            }
        }
        self.appended();
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if !self.in_line {
            self.open_line();
            self.in_line = true;
        }
        self.buf.extend_from_slice(data);
        self.appended();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out();
        Ok(())
    }
}

std::thread_local! {
    /// The level of the line this thread's [`Leveled`] logger is writing, for the sink's
    /// `[LEVEL] ` tag (a thread's line is written on that thread, within its `log` call).
    static LINE_LEVEL: std::cell::Cell<Option<log::Level>> = const { std::cell::Cell::new(None) };
}

/// A logger that hands the sink each line's level before the inner logger writes it, so the
/// sink writes `[LEVEL] ` after its timestamp. simplelog's own level tag costs a `format!` (an
/// allocation and a padded `Display`) per line: a fifth of a handshake's instructions in the
/// loop, with two lines per session (callgrind).
pub struct Leveled<L: log::Log>(pub L);

impl<L: log::Log> log::Log for Leveled<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        LINE_LEVEL.set(Some(record.level()));
        self.0.log(record);
        LINE_LEVEL.set(None);
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// The lean `simplelog` configuration: only the message, after the sink's timestamp and level
/// tag ([`Leveled`]).
fn line_config() -> simplelog::Config {
    simplelog::ConfigBuilder::new()
        .set_max_level(LevelFilter::Off)
        .set_time_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_level_padding(simplelog::LevelPadding::Off)
        .build()
}

/// Installs the global logger: lines at `level` or more severe, to stderr through a
/// [`StampedBuffer`].
pub fn init_stderr(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    let lines = simplelog::WriteLogger::new(level, line_config(), StampedBuffer::new(io::stderr()));
    log::set_boxed_logger(Box::new(Leveled(lines)))?;
    log::set_max_level(level);
    Ok(())
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
        f.write_str(v4_text(v4, &mut [0u8; 21]))
    }
}

/// `a.b.c.d:port` of `v4`, formatted in `b` ("255.255.255.255:65535" is 21 bytes).
fn v4_text(v4: std::net::SocketAddrV4, b: &mut [u8; 21]) -> &str {
    let mut n = 0;
    for (i, o) in v4.ip().octets().iter().enumerate() {
        if i > 0 {
            b[n] = b'.';
            n += 1;
        }
        put_decimal(b, &mut n, u32::from(*o));
    }
    b[n] = b':';
    n += 1;
    put_decimal(b, &mut n, u32::from(v4.port()));
    // SAFETY: `b[..n]` holds only the ASCII digits, '.' and ':' written just above, so it
    // is valid UTF-8 (validating it cost more than formatting it).
    unsafe { std::str::from_utf8_unchecked(&b[..n]) }
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

/// A name a peer sent, for log lines inside double quotes (`"{}"` in the format string): as
/// is when it is printable ASCII without a quote or backslash, else with `{:?}`'s escapes, so a
/// name cannot forge a line (the common case is one copy, not a per-character escape).
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Peer-supplied: at most the first CLIP_BYTES bytes, then the length.
        let clip = Clip(self.0);
        let head = clip.head();
        if is_plain(head) {
            f.write_str(head)?;
        } else {
            fmt::Display::fmt(&head.escape_debug(), f)?;
        }
        clip.tail(f)
    }
}

/// A log line built by appending into a reused buffer, for the lines written once per session
/// (online, offline): `format_args!` pays a dynamic call and a buffer append per piece, which
/// made those two lines 40% of a churn session's user-space instructions (callgrind); here a
/// line is a few `push_str`s and `itoa` digits, no formatting machinery, and goes to the logger as one piece (`info!("{}", line.as_str())`).
/// Quoting and clipping are those of [`Escaped`], addresses those of [`Peer`].
#[derive(Default)]
pub struct LineBuf(String);

impl LineBuf {
    /// Empties the buffer for a new line (its capacity stays).
    pub fn start(&mut self) -> &mut Self {
        self.0.clear();
        self
    }

    /// Appends `s` as is (for the line's own words, not for what a peer sent).
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// Appends `n` in decimal.
    pub fn num(&mut self, n: impl itoa::Integer) -> &mut Self {
        self.0.push_str(itoa::Buffer::new().format(n));
        self
    }

    /// Appends a peer-supplied string inside double quotes, clipped and escaped as [`Escaped`].
    pub fn quoted(&mut self, s: &str) -> &mut Self {
        use fmt::Write as _;
        self.0.push('"');
        let clip = Clip(s);
        let head = clip.head();
        if is_plain(head) {
            self.0.push_str(head);
            if s.len() > CLIP_BYTES {
                let _ = write!(self.0, "... ({} bytes)", s.len());
            }
        } else {
            let _ = write!(self.0, "{}", Escaped(s));
        }
        self.0.push('"');
        self
    }

    /// Appends a peer address as [`Peer`] shows it.
    pub fn peer(&mut self, addr: SocketAddr) -> &mut Self {
        match addr {
            // One append of a stack-built text: a `push_str` per piece was a `memcpy` call per
            // dot (callgrind: the loop thread's largest caller of memcpy).
            SocketAddr::V4(v4) => self.text(v4_text(v4, &mut [0u8; 21])),
            SocketAddr::V6(_) => {
                use fmt::Write as _;
                let _ = write!(self.0, "{addr}");
                self
            }
        }
    }

    /// Appends a duration in milliseconds as [`Seconds`] shows it (`12.034 s`).
    pub fn seconds(&mut self, ms: u64) -> &mut Self {
        self.num(ms / 1000);
        let frac = thousandths(ms);
        self.text(std::str::from_utf8(&frac).unwrap_or(".000"))
            .text(" s")
    }

    /// The line so far.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Printable ASCII without a quote or a backslash: shown as is inside quotes.
fn is_plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// A duration in milliseconds as seconds with three decimals, e.g. `12.034 s`.
#[derive(Clone, Copy)]
pub struct Seconds(pub u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&(self.0 / 1000), f)?;
        let frac = thousandths(self.0);
        // Always ASCII; validating four bytes is cheap.
        f.write_str(std::str::from_utf8(&frac).unwrap_or(".000"))?;
        f.write_str(" s")
    }
}

/// `.mmm`: the thousandths of `ms` (its last three decimal digits), by hand: `{:03}` goes
/// through the padding machinery, in every log line's stamp and every offline line.
fn thousandths(ms: u64) -> [u8; 4] {
    let ms = (ms % 1000) as u32;
    [
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]
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
    fn lines_are_stamped_buffered_until_flushed_and_filtered_by_level() {
        use log::{Log, Record};
        let out = Arc::new(StdMutex::new(Vec::new()));
        let logger = Leveled(simplelog::WriteLogger::new(
            LevelFilter::Info,
            line_config(),
            StampedBuffer::new(Shared(out.clone())),
        ));
        let peer = Peer("127.0.0.1:5".parse().expect("addr"));
        for (level, args) in [
            (log::Level::Info, format_args!("conn {} from {peer}", 7)),
            (log::Level::Debug, format_args!("hidden")),
            (log::Level::Warn, format_args!("second")),
        ] {
            logger.log(&Record::builder().level(level).args(args).build());
        }
        assert!(
            out.lock().expect("lock").is_empty(),
            "nothing written before flush"
        );
        logger.flush();
        let text = String::from_utf8(out.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("Z [INFO] conn 7 from 127.0.0.1:5"),
            "{text}"
        );
        assert!(lines[1].ends_with("Z [WARN] second"), "{text}");
        for line in lines {
            // 2026-12-01T07:53:06.123Z
            let b = line.as_bytes();
            assert_eq!(
                (b[4], b[10], b[19], b[23], b[24]),
                (b'-', b'T', b'.', b'Z', b' ')
            );
        }
    }

    #[test]
    fn names_are_escaped_like_debug_only_when_needed() {
        assert_eq!(format!("\"{}\"", Escaped("g100000")), "\"g100000\"");
        assert_eq!(format!("\"{}\"", Escaped("")), "\"\"");
        for tricky in ["a\nb", "q\"uote", "back\\slash", "é", "\u{1b}[31m"] {
            assert_eq!(format!("\"{}\"", Escaped(tricky)), format!("{tricky:?}"));
        }
    }

    #[test]
    fn line_bufs_write_what_the_formatters_write() {
        let peer: SocketAddr = "10.1.2.3:4567".parse().expect("addr");
        let long = "n".repeat(100);
        for name in ["plain", "quo\"te", "tab\there", long.as_str(), "é"] {
            let mut line = LineBuf::default();
            line.start()
                .text("game ")
                .num(7u32)
                .text(" (")
                .peer(peer)
                .text(") name ")
                .quoted(name)
                .text(" n ")
                .num(42u32);
            let expected = format!("game 7 ({}) name \"{}\" n 42", Peer(peer), Escaped(name));
            assert_eq!(line.as_str(), expected);
            for ms in [0, 7, 45, 999, 1000, 12_034, 3_600_100] {
                line.start().seconds(ms);
                assert_eq!(line.as_str(), Seconds(ms).to_string());
            }
            let v6: SocketAddr = "[::1]:9".parse().expect("v6");
            line.start().peer(v6).text(" ").peer(peer);
            let expected = format!("{} {}", Peer(v6), Peer(peer));
            assert_eq!(line.as_str(), expected);
            // A second line reuses the buffer and starts empty.
            line.start().text("x");
            assert_eq!(line.as_str(), "x");
        }
    }

    #[test]
    fn seconds_have_three_decimals() {
        assert_eq!(Seconds(0).to_string(), "0.000 s");
        assert_eq!(Seconds(12_034).to_string(), "12.034 s");
        assert_eq!(Seconds(999).to_string(), "0.999 s");
        assert_eq!(Seconds(3_600_001).to_string(), "3600.001 s");
    }
}
