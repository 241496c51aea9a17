//! The partial-frame buffer of a connection: it holds the bytes of an incomplete frame that
//! actually arrived, never the length the peer declared (SECURITY.md, worst cases); and the
//! frame size a header declares, read in one place.

use crate::proto;

/// The bytes a frame occupies (header included), from its 2-byte header: the one place the
/// reactor reads a declared length (validity is [`proto::parse_frame`]'s to judge).
pub(super) fn frame_size(header: [u8; 2]) -> usize {
    proto::HEADER_LEN + u16::from_be_bytes(header) as usize
}

/// Appends received bytes to a partial frame. Capacity at most doubles what is held and
/// never passes the frame's declared size, so a connection's partial buffer stays under twice
/// the bytes it actually sent and under `HEADER_LEN + max_frame`.
pub(super) fn append_partial(partial: &mut Vec<u8>, bytes: &[u8]) {
    let len = partial.len() + bytes.len();
    if len > partial.capacity() {
        let mut head = partial.iter().chain(bytes);
        let frame = match (head.next(), head.next()) {
            (Some(&hi), Some(&lo)) => frame_size([hi, lo]),
            _ => len,
        };
        let target = (partial.len() * 2).min(frame).max(len);
        partial.reserve_exact(target - partial.len());
    }
    partial.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_reserves_nothing() {
        let mut p = Vec::new();
        append_partial(&mut p, &[0xFF, 0xFF, 7]);
        assert_eq!(p, [0xFF, 0xFF, 7]);
        assert!(p.capacity() < 64, "capacity {}", p.capacity());
    }

    #[test]
    fn capacity_follows_bytes_received_and_stops_at_the_frame() {
        let mut p = Vec::new();
        append_partial(&mut p, &[0xFF]);
        append_partial(&mut p, &[0xFF]);
        let frame = proto::HEADER_LEN + 65_535;
        let chunk = [1u8; 1000];
        while p.len() + chunk.len() <= frame {
            append_partial(&mut p, &chunk);
            assert!(
                p.capacity() <= 2 * p.len().max(chunk.len()),
                "{}",
                p.capacity()
            );
            assert!(p.capacity() <= frame);
        }
        let rest = frame - p.len();
        append_partial(&mut p, &chunk[..rest]);
        assert_eq!(p.len(), frame);
        assert!(p.capacity() <= frame, "capacity {}", p.capacity());
    }
}
