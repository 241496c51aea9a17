//! Reading the audit log's most recent lines for `GET /api/audit`, bounded: at most
//! [`MAX_TAIL_BYTES`] are read from the end of the file, however large it is.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Most bytes read from the end of the audit log for one request.
pub const MAX_TAIL_BYTES: u64 = 256 << 10;

/// The last `lines` whole lines of the file at `path`, oldest first. A missing file has no
/// lines. Lines longer than what fits in [`MAX_TAIL_BYTES`] are left out.
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(MAX_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.take(MAX_TAIL_BYTES).read_to_end(&mut buf)?;
    Ok(last_lines(&buf, start > 0, lines))
}

/// The last `n` lines of `buf`; when `cut` the first line may be partial and is dropped.
fn last_lines(buf: &[u8], cut: bool, n: usize) -> Vec<String> {
    let mut text = String::from_utf8_lossy(buf);
    if cut {
        let from = text.find('\n').map_or(text.len(), |i| i + 1);
        text = text[from..].to_string().into();
    }
    let all: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    all[all.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_and_drops_a_partial_first_one() {
        assert_eq!(last_lines(b"a\nb\nc\n", false, 2), ["b", "c"]);
        assert_eq!(last_lines(b"a\nb\nc\n", false, 10), ["a", "b", "c"]);
        assert_eq!(last_lines(b"tial\nb\nc", true, 10), ["b", "c"]);
        assert_eq!(
            last_lines(b"no newline at all", true, 10),
            Vec::<String>::new()
        );
        assert_eq!(last_lines(b"\xff\n", false, 1), ["\u{fffd}"]);
    }

    #[test]
    fn reads_at_most_the_bound_from_a_large_file() {
        let path =
            std::env::temp_dir().join(format!("login-node-audit-tail-{}", std::process::id()));
        let line = "x".repeat(99) + "\n";
        std::fs::write(&path, line.repeat(10_000)).expect("write");
        let got = tail(&path, 1000).expect("tail");
        // 256 KiB hold 2621 whole lines of 100 bytes; 1000 are asked for.
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|l| l.len() == 99));
        let all = tail(&path, usize::MAX).expect("tail");
        assert!(
            all.len() <= (MAX_TAIL_BYTES / 100) as usize,
            "{}",
            all.len()
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(tail(&path, 5).expect("missing file"), Vec::<String>::new());
    }
}
