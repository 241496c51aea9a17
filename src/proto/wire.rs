//! Field encodings of protocol v1 (contract section 2): a bounds-checked reader over a body and
//! append-only writers. Every read returns an error instead of panicking, and nothing here
//! allocates: strings and lists are borrowed from the input.

use std::fmt;

/// Why a message body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ends before its last known field.
    Truncated,
    /// A `str` field is not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("body truncated"),
            DecodeError::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over a message body. Trailing bytes after the last field read are ignored, as the
/// contract requires (later versions may append fields).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the first byte of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Takes exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads 16 raw bytes (an md5 digest).
    pub fn md5(&mut self) -> Result<[u8; 16], DecodeError> {
        self.array()
    }

    /// Reads a `str`: a `u16` byte length, then that many bytes of UTF-8.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u16()? as usize;
        let raw = self.bytes(len)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads a `list<T>` whose elements are `elem_min` bytes or more, returning the element
    /// count and the raw bytes that follow. The count is checked against the bytes present
    /// (`count * elem_min`), so a hostile count cannot make a caller reserve memory the input
    /// does not justify.
    pub fn list_header(&mut self, elem_min: usize) -> Result<u16, DecodeError> {
        let count = self.u16()?;
        if (count as usize).saturating_mul(elem_min) > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(count)
    }
}

/// Appends a big-endian `u16`.
#[inline]
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `u32`.
#[inline]
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `u64`.
#[inline]
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a `str`. Strings longer than 65,535 bytes cannot be encoded; callers only pass
/// strings that came from a decoded frame or were checked on the way in, so this truncates at
/// a character boundary rather than corrupt the frame.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_u16(out, end as u16);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fixed_width_fields_big_endian() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 9]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.remaining(), &[9]);
    }

    #[test]
    fn truncated_fields_are_errors() {
        assert_eq!(Reader::new(&[1]).u16(), Err(DecodeError::Truncated));
        assert_eq!(
            Reader::new(&[0, 3, b'a']).str(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Reader::new(&[0; 15]).md5(), Err(DecodeError::Truncated));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            Reader::new(&[0, 2, 0xc3, 0x28]).str(),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn list_count_is_checked_against_bytes_present() {
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0, 0, 0, 1]).list_header(4),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Reader::new(&[0, 1, 0, 0, 0, 1]).list_header(4), Ok(1));
    }

    #[test]
    fn put_str_truncates_oversized_strings_at_a_char_boundary() {
        let long = "é".repeat(40_000); // 80,000 bytes
        let mut out = Vec::new();
        put_str(&mut out, &long);
        let mut r = Reader::new(&out);
        let back = r.str().expect("valid");
        assert_eq!(back.len(), 65_534);
        assert!(r.remaining().is_empty());
    }
}
