//! etcd's native gRPC (HTTP/2 without TLS, protobuf messages) for a group's data: the fenced
//! transaction of every batch, and the range reads that load the state at a promotion.
//!
//! Why not the JSON gateway the other calls use ([`super::etcd`]): etcd spends about four
//! times less CPU per key on a gRPC `Txn` than on the same transaction through `/v3/kv/txn`
//! (measured here: ~12 against ~50–99 µs per put; the gateway decodes JSON and base64, then
//! calls etcd's own gRPC server over loopback, and encodes a JSON answer per operation). On a
//! machine etcd shares with the login node, that CPU is the group's handshake rate; and a page
//! of 20,000 keys took the gateway ~0.6 s to serve, which was most of a promotion. Leases and
//! the election stay on the gateway: a few small calls a second, where readable JSON is worth
//! more than CPU.
//!
//! libcurl (bundled, with nghttp2) is the HTTP/2 client: blocking, so the store thread needs
//! no async runtime, and it keeps one connection per endpoint open between calls. prost
//! encodes the messages. Only the fields the login node sets are declared; prost skips the
//! others in answers.

use super::etcd::{EtcdError, TxnOp};
use curl::easy::{Easy2, Handler, HttpVersion, List, WriteError};
use prost::Message;
use std::time::Duration;

/// `etcdserverpb.TxnRequest`: compare, then success ops (no failure ops).
#[derive(Clone, PartialEq, Message)]
struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    success: Vec<RequestOp>,
}

/// `etcdserverpb.Compare` with target CREATE: `key`'s create revision EQUAL to ours.
#[derive(Clone, PartialEq, Message)]
struct Compare {
    /// CompareResult: EQUAL = 0.
    #[prost(int32, tag = "1")]
    result: i32,
    /// CompareTarget: CREATE = 1.
    #[prost(int32, tag = "2")]
    target: i32,
    #[prost(bytes = "vec", tag = "3")]
    key: Vec<u8>,
    /// The `create_revision` member of the `target_union` oneof (always set, even if 0).
    #[prost(int64, optional, tag = "5")]
    create_revision: Option<i64>,
}

/// `etcdserverpb.RequestOp`: one member of its `request` oneof is set.
#[derive(Clone, PartialEq, Message)]
struct RequestOp {
    #[prost(message, optional, tag = "2")]
    request_put: Option<PutRequest>,
    #[prost(message, optional, tag = "3")]
    request_delete_range: Option<DeleteRangeRequest>,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `etcdserverpb.DeleteRangeRequest`: one key, or [key, range_end).
#[derive(Clone, PartialEq, Message)]
struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
}

/// `etcdserverpb.TxnResponse`: whether the compare held.
#[derive(Clone, PartialEq, Message)]
struct TxnResponse {
    #[prost(bool, tag = "2")]
    succeeded: bool,
}

/// `etcdserverpb.RangeRequest`: keys in [key, range_end) at `revision`, at most `limit`.
#[derive(Clone, PartialEq, Message)]
struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    limit: i64,
    #[prost(int64, tag = "4")]
    revision: i64,
}

/// `etcdserverpb.RangeResponse`: the keys, and whether more follow.
#[derive(Clone, PartialEq, Message)]
struct RangeResponse {
    #[prost(message, repeated, tag = "2")]
    kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    more: bool,
}

/// `mvccpb.KeyValue`: its key and value.
#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    value: Vec<u8>,
}

/// Most bytes of one answer: a transaction's is a few bytes per operation; a page of a range
/// read holds up to 20,000 keys and values (as the gateway's limit was).
const TXN_ANSWER_LIMIT: usize = 16 << 20;
const RANGE_ANSWER_LIMIT: usize = 256 << 20;

/// gRPC status codes after which another endpoint may do better (etcd: "no leader", "leader
/// changed", "request timed out"): UNAVAILABLE, DEADLINE_EXCEEDED.
const RETRY_ELSEWHERE: [u32; 2] = [14, 4];

/// What one call collects: the answer's body and its header and trailer lines.
#[derive(Default)]
struct Collect {
    body: Vec<u8>,
    /// Most bytes of body taken; a peer sending more is not etcd.
    limit: usize,
    /// `grpc-status` (from the trailers, or the headers of a trailers-only answer).
    status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    message: String,
}

impl Handler for Collect {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if self.body.len() + data.len() > self.limit {
            return Ok(0); // aborts the transfer
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn header(&mut self, line: &[u8]) -> bool {
        let line = String::from_utf8_lossy(line);
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("grpc-status") {
                self.status = value.parse().ok();
            } else if name.eq_ignore_ascii_case("grpc-message") {
                self.message = percent_decode(value);
            }
        }
        true
    }
}

/// gRPC's percent-encoding of `grpc-message` undone (bad escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A message as gRPC frames it: compressed flag 0, length u32 BE, then the protobuf.
fn frame(msg: &impl Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // Infallible into a Vec (it grows); `encode` would only check the capacity first.
    msg.encode_raw(&mut out);
    out
}

/// The one message of an answer's body, unframed.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let (head, rest) = body
        .split_first_chunk::<5>()
        .ok_or_else(|| format!("an answer of {} bytes", body.len()))?;
    if head[0] != 0 {
        return Err("a compressed answer (none was offered)".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!("a message of {len} bytes in {} bytes", rest.len()));
    }
    Ok(rest)
}

/// The request's bytes.
fn encode_txn(leader_key: &[u8], create_revision: i64, prefix: &[u8], ops: &[TxnOp]) -> Vec<u8> {
    let full = |k: &[u8]| {
        let mut key = Vec::with_capacity(prefix.len() + k.len());
        key.extend_from_slice(prefix);
        key.extend_from_slice(k);
        key
    };
    frame(&TxnRequest {
        compare: vec![Compare {
            result: 0,
            target: 1,
            key: leader_key.to_vec(),
            create_revision: Some(create_revision),
        }],
        success: ops
            .iter()
            .map(|op| match op {
                TxnOp::Put(k, v) => RequestOp {
                    request_put: Some(PutRequest {
                        key: full(k),
                        value: v.clone(),
                    }),
                    request_delete_range: None,
                },
                TxnOp::Delete(k) => RequestOp {
                    request_put: None,
                    request_delete_range: Some(DeleteRangeRequest {
                        key: full(k),
                        range_end: Vec::new(),
                    }),
                },
                TxnOp::DeletePrefix(k) => RequestOp {
                    request_put: None,
                    request_delete_range: Some(DeleteRangeRequest {
                        range_end: super::etcd::prefix_end(&full(k)),
                        key: full(k),
                    }),
                },
            })
            .collect(),
    })
}

/// Reads a `TxnResponse` out of an answer's body.
fn decode_txn_answer(body: &[u8]) -> Result<bool, String> {
    TxnResponse::decode(unframe(body)?)
        .map(|r| r.succeeded)
        .map_err(|e| e.to_string())
}

/// A blocking gRPC client for etcd's `KV/Txn` and `KV/Range`.
pub struct KvClient {
    easy: Easy2<Collect>,
    timeout: Duration,
}

impl KvClient {
    /// A client whose calls are each bounded by `timeout`.
    pub fn new(timeout: Duration) -> KvClient {
        KvClient {
            easy: Easy2::new(Collect::default()),
            timeout,
        }
    }

    /// One unary call of `method` at `base` with `request` (a framed message); the answer's
    /// framed body. [`EtcdError::Unreachable`] means this endpoint could not say (no
    /// connection, a timeout, no leader): the outcome is unknown and another may be tried.
    fn call(
        &mut self,
        base: &str,
        method: &str,
        request: &[u8],
        limit: usize,
    ) -> Result<&[u8], EtcdError> {
        let url = format!("{base}/etcdserverpb.KV/{method}");
        *self.easy.get_mut() = Collect {
            limit,
            ..Collect::default()
        };
        let setup = (|| {
            let mut headers = List::new();
            headers.append("Content-Type: application/grpc")?;
            headers.append("TE: trailers")?;
            self.easy.url(&url)?;
            self.easy.http_version(HttpVersion::V2PriorKnowledge)?;
            self.easy.post(true)?;
            self.easy.post_fields_copy(request)?;
            self.easy.http_headers(headers)?;
            self.easy.timeout(self.timeout)?;
            self.easy
                .connect_timeout(self.timeout.min(Duration::from_secs(2)))
        })();
        setup.map_err(|e| EtcdError::Bad(format!("{url}: {e}")))?;
        if let Err(e) = self.easy.perform() {
            return Err(EtcdError::Unreachable(format!("{url}: {e}")));
        }
        let http = self.easy.response_code().unwrap_or(0);
        let answer = self.easy.get_ref();
        match answer.status {
            _ if http != 200 => Err(EtcdError::Unreachable(format!("{url}: HTTP {http}"))),
            Some(0) => Ok(&answer.body),
            Some(code) if RETRY_ELSEWHERE.contains(&code) => Err(EtcdError::Unreachable(format!(
                "{url}: {} (gRPC status {code})",
                answer.message
            ))),
            Some(code) => Err(EtcdError::Refused(format!(
                "{url}: {} (gRPC status {code})",
                answer.message
            ))),
            None => Err(EtcdError::Bad(format!(
                "{url}: an answer without grpc-status"
            ))),
        }
    }

    /// One fenced transaction at `base` (`http://host:port`): `Ok(true)` applied, `Ok(false)`
    /// the compare failed.
    pub fn txn(
        &mut self,
        base: &str,
        leader_key: &[u8],
        create_revision: i64,
        prefix: &[u8],
        ops: &[TxnOp],
    ) -> Result<bool, EtcdError> {
        let request = encode_txn(leader_key, create_revision, prefix, ops);
        let body = self.call(base, "Txn", &request, TXN_ANSWER_LIMIT)?;
        decode_txn_answer(body).map_err(|e| EtcdError::Bad(format!("{base} Txn: {e}")))
    }

    /// Up to `limit` keys in [`from`, `end`) at `revision`, appended to `out` (keys with
    /// `strip` bytes removed from their front); whether more follow.
    #[allow(clippy::too_many_arguments)]
    pub fn range(
        &mut self,
        base: &str,
        from: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
        strip: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(bool, Option<Vec<u8>>), EtcdError> {
        let request = frame(&RangeRequest {
            key: from.to_vec(),
            range_end: end.to_vec(),
            limit,
            revision,
        });
        let body = self.call(base, "Range", &request, RANGE_ANSWER_LIMIT)?;
        let answer = unframe(body)
            .and_then(|m| RangeResponse::decode(m).map_err(|e| e.to_string()))
            .map_err(|e| EtcdError::Bad(format!("{base} Range: {e}")))?;
        let last = answer.kvs.last().map(|kv| kv.key.clone());
        out.extend(
            answer
                .kvs
                .into_iter()
                .map(|kv| (kv.key[strip.min(kv.key.len())..].to_vec(), kv.value)),
        );
        Ok((answer.more, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_encodes_as_etcd_reads_it() {
        let body = encode_txn(
            b"/g/leader",
            7,
            b"/g/state/",
            &[
                TxnOp::Put(b"server/1".to_vec(), vec![4, 0, 0, 0, 90, 0, 1]),
                TxnOp::Put(b"drain/90".to_vec(), Vec::new()),
                TxnOp::Delete(b"maintenance/1".to_vec()),
                TxnOp::DeletePrefix(b"assign/".to_vec()),
            ],
        );
        assert_eq!(body[0], 0);
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(len, body.len() - 5);
        let req = TxnRequest::decode(&body[5..]).expect("decodes");
        assert_eq!(req.compare[0].key, b"/g/leader");
        assert_eq!(req.compare[0].create_revision, Some(7));
        assert_eq!((req.compare[0].result, req.compare[0].target), (0, 1));
        let put = req.success[0].request_put.as_ref().expect("put");
        assert_eq!(put.key, b"/g/state/server/1");
        assert_eq!(put.value, [4, 0, 0, 0, 90, 0, 1]);
        assert_eq!(
            req.success[1].request_put.as_ref().map(|p| p.value.len()),
            Some(0)
        );
        let delete = req.success[2]
            .request_delete_range
            .as_ref()
            .expect("delete");
        assert_eq!(delete.key, b"/g/state/maintenance/1");
        assert!(delete.range_end.is_empty());
        let range = req.success[3].request_delete_range.as_ref().expect("range");
        assert_eq!(
            (&range.key[..], &range.range_end[..]),
            (&b"/g/state/assign/"[..], &b"/g/state/assign0"[..])
        );
        // The wire bytes of the compare, by hand: field 1 (result) is 0 and omitted, field 2
        // (target) = 1, field 3 (key), field 5 (create_revision) = 7 even when it is the oneof.
        let compare = Compare {
            result: 0,
            target: 1,
            key: b"k".to_vec(),
            create_revision: Some(0),
        };
        assert_eq!(compare.encode_to_vec(), [0x10, 1, 0x1a, 1, b'k', 0x28, 0]);
    }

    #[test]
    fn answers_decode_and_damaged_ones_are_errors() {
        // succeeded = true, with a header (field 1) before it that is skipped.
        let msg = [0x0a, 2, 0x08, 1, 0x10, 1];
        let mut body = vec![0, 0, 0, 0, msg.len() as u8];
        body.extend_from_slice(&msg);
        assert_eq!(decode_txn_answer(&body), Ok(true));
        assert_eq!(decode_txn_answer(&[0, 0, 0, 0, 0]), Ok(false));
        for bad in [&body[..3], &body[..body.len() - 1], &[1, 0, 0, 0, 0][..]] {
            assert!(decode_txn_answer(bad).is_err(), "{bad:?}");
        }
        let mut huge = vec![0, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&msg);
        assert!(decode_txn_answer(&huge).is_err());
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(
            percent_decode("etcdserver: too many%20operations %E2%9C%93"),
            "etcdserver: too many operations ✓"
        );
        assert_eq!(percent_decode("100% sure %zz %4"), "100% sure %zz %4");
    }
}
