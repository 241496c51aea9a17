//! The AUTH signature (contract section 4): `md5(decimal(node_id) ++ decimal(time) ++ token)`.

use md5::{Digest, Md5};

/// Computes the signature a node with `node_id` sends for `time` under the shared `token`.
pub fn sign(node_id: u32, time: u32, token: &[u8]) -> [u8; 16] {
    // Format the decimals on the stack: this runs once per AUTH and should not allocate.
    let mut digits = itoa::Buffer::new();
    let mut hasher = Md5::new();
    hasher.update(decimal(node_id, &mut digits));
    hasher.update(decimal(time, &mut digits));
    hasher.update(token);
    hasher.finalize().into()
}

/// Writes `v` in decimal (no leading zeros, no sign) into `buf` and returns the digits
/// (`itoa`: two digits per step, a third of the instructions of one digit per division).
fn decimal(v: u32, buf: &mut itoa::Buffer) -> &[u8] {
    buf.format(v).as_bytes()
}

/// Compares two digests in time independent of where they differ, so a peer cannot learn a
/// valid signature byte by byte from response timing.
pub fn digests_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// True when `sign` is the signature of (`node_id`, `time`) under any of `tokens`.
/// Every token is checked, so the time taken does not reveal which one matched.
pub fn verify<T: AsRef<[u8]>>(
    node_id: u32,
    time: u32,
    sign_bytes: &[u8; 16],
    tokens: &[T],
) -> bool {
    let mut ok = false;
    for token in tokens {
        ok |= digests_equal(&sign(node_id, time, token.as_ref()), sign_bytes);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_has_no_leading_zeros() {
        let mut b = itoa::Buffer::new();
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1001, &mut b), b"1001");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn contract_example() {
        // Contract section 4: node_id 1001, time 1700000000, token "secret".
        let expected: [u8; 16] = Md5::digest(b"10011700000000secret").into();
        assert_eq!(sign(1001, 1_700_000_000, b"secret"), expected);
    }

    #[test]
    fn verify_accepts_the_right_token_only() {
        let s = sign(7, 99, b"tok");
        assert!(verify(7, 99, &s, &[b"tok"]));
        assert!(verify(7, 99, &s, &["old", "tok"]));
        assert!(!verify(7, 99, &s, &[b"other"]));
        assert!(!verify(7, 100, &s, &[b"tok"]));
        assert!(!verify::<&[u8]>(7, 99, &s, &[]));
    }
}
