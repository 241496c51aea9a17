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
    #[prost(message, repeated, tag = "3")]
    failure: Vec<RequestOp>,
}

/// `etcdserverpb.Compare`, EQUAL on a key's create revision (target CREATE) or its last
/// modification's revision (target MOD).
#[derive(Clone, PartialEq, Message)]
struct Compare {
    /// CompareResult: EQUAL = 0.
    #[prost(int32, tag = "1")]
    result: i32,
    /// CompareTarget: CREATE = 1, MOD = 2.
    #[prost(int32, tag = "2")]
    target: i32,
    #[prost(bytes = "vec", tag = "3")]
    key: Vec<u8>,
    /// The `create_revision` member of the `target_union` oneof (always set, even if 0).
    #[prost(int64, optional, tag = "5")]
    create_revision: Option<i64>,
    /// The `mod_revision` member of the oneof (0 for a key that does not exist).
    #[prost(int64, optional, tag = "6")]
    mod_revision: Option<i64>,
}

/// `etcdserverpb.RequestOp`: one member of its `request` oneof is set.
#[derive(Clone, PartialEq, Message)]
struct RequestOp {
    #[prost(message, optional, tag = "1")]
    request_range: Option<RangeRequest>,
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

/// `etcdserverpb.TxnResponse`: whether the compares held, the revision it made, and the
/// answers of the branch that ran (the failure branch's range reads).
#[derive(Clone, PartialEq, Message)]
struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    responses: Vec<ResponseOp>,
}

/// `etcdserverpb.ResponseHeader`: the store's revision after the request.
#[derive(Clone, PartialEq, Message)]
struct ResponseHeader {
    #[prost(int64, tag = "3")]
    revision: i64,
}

/// `etcdserverpb.ResponseOp`: a range read's answer.
#[derive(Clone, PartialEq, Message)]
struct ResponseOp {
    #[prost(message, optional, tag = "1")]
    response_range: Option<RangeResponse>,
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

/// `mvccpb.KeyValue`: its key, revisions and value.
#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(int64, tag = "2")]
    create_revision: i64,
    #[prost(int64, tag = "3")]
    mod_revision: i64,
    #[prost(bytes = "vec", tag = "5")]
    value: Vec<u8>,
}

/// Most bytes of one answer: a transaction's is a few bytes per operation; a page of a range
/// read holds up to 20,000 keys and values (as the gateway's limit was).
const TXN_ANSWER_LIMIT: usize = 16 << 20;
const RANGE_ANSWER_LIMIT: usize = 256 << 20;

/// gRPC status codes after which another endpoint may do better (etcd: "no leader", "leader
/// changed", "request timed out", "too many requests" from a lagging member):
/// UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, DATA_LOSS.
const RETRY_ELSEWHERE: [u32; 4] = [14, 4, 8, 15];

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
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
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

/// What fences a group's data transaction: the election key still has our create revision
/// (the role), and the order key was last written at `order_revision` (by our previous
/// transaction, or before we took over), so a copy of a transaction that reaches etcd late
/// (stuck in a paused member, resent after a timeout) cannot land after newer ones. Each
/// transaction writes `id` to the order key.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    /// `<prefix>/leader`.
    pub leader_key: &'a [u8],
    /// Its create revision when we won it.
    pub create_revision: i64,
    /// `<prefix>/order`.
    pub order_key: &'a [u8],
    /// The revision of the order key's last write (0: it does not exist).
    pub order_revision: i64,
    /// This transaction's id, the order key's value once it applies.
    pub id: &'a [u8],
}

/// What a fenced transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied, at this revision (the order key's new last write).
    Applied {
        /// The store's revision after it.
        revision: i64,
    },
    /// A compare failed; what the two keys hold now.
    NotApplied {
        /// The election key's create revision (`None`: it is gone).
        leader_created: Option<i64>,
        /// The order key's last write: (revision, value).
        order: Option<(i64, Vec<u8>)>,
    },
}

fn range_of_key(key: &[u8]) -> RequestOp {
    RequestOp {
        request_range: Some(RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        }),
        ..RequestOp::default()
    }
}

/// The request's bytes.
fn encode_txn(fence: &Fence<'_>, prefix: &[u8], ops: &[TxnOp]) -> Vec<u8> {
    let full = |k: &[u8]| {
        let mut key = Vec::with_capacity(prefix.len() + k.len());
        key.extend_from_slice(prefix);
        key.extend_from_slice(k);
        key
    };
    let delete = |key: Vec<u8>, range_end: Vec<u8>| RequestOp {
        request_delete_range: Some(DeleteRangeRequest { key, range_end }),
        ..RequestOp::default()
    };
    let put = |key: Vec<u8>, value: Vec<u8>| RequestOp {
        request_put: Some(PutRequest { key, value }),
        ..RequestOp::default()
    };
    let mut success: Vec<RequestOp> = ops
        .iter()
        .map(|op| match op {
            TxnOp::Put(k, v) => put(full(k), v.clone()),
            TxnOp::Delete(k) => delete(full(k), Vec::new()),
            TxnOp::DeletePrefix(k) => delete(full(k), super::etcd::prefix_end(&full(k))),
        })
        .collect();
    success.push(put(fence.order_key.to_vec(), fence.id.to_vec()));
    frame(&TxnRequest {
        compare: vec![
            Compare {
                result: 0,
                target: 1,
                key: fence.leader_key.to_vec(),
                create_revision: Some(fence.create_revision),
                mod_revision: None,
            },
            Compare {
                result: 0,
                target: 2,
                key: fence.order_key.to_vec(),
                create_revision: None,
                mod_revision: Some(fence.order_revision),
            },
        ],
        success,
        failure: vec![
            range_of_key(fence.leader_key),
            range_of_key(fence.order_key),
        ],
    })
}

/// Reads a `TxnResponse` out of an answer's body.
fn decode_txn_answer(body: &[u8]) -> Result<TxnOutcome, String> {
    let answer = TxnResponse::decode(unframe(body)?).map_err(|e| e.to_string())?;
    if answer.succeeded {
        let revision = answer.header.map_or(0, |h| h.revision);
        if revision <= 0 {
            return Err("an applied transaction without its revision".into());
        }
        return Ok(TxnOutcome::Applied { revision });
    }
    let mut ranges = answer
        .responses
        .into_iter()
        .map(|r| r.response_range.and_then(|r| r.kvs.into_iter().next()));
    let (leader, order) = (ranges.next().flatten(), ranges.next().flatten());
    Ok(TxnOutcome::NotApplied {
        leader_created: leader.map(|kv| kv.create_revision),
        order: order.map(|kv| (kv.mod_revision, kv.value)),
    })
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
            // etcd is reached directly: an http_proxy in the environment is not for it.
            self.easy.noproxy("*")?;
            self.easy
                .connect_timeout(self.timeout.min(Duration::from_secs(2)))
        })();
        setup.map_err(|e| EtcdError::Bad(format!("{url}: {e}")))?;
        if let Err(e) = self.easy.perform() {
            if e.is_write_error() {
                return Err(EtcdError::TooLarge(format!(
                    "{url}: an answer larger than {limit} bytes"
                )));
            }
            // A kept-alive connection the server closed meanwhile (etcd restarted): the
            // request never left, so once more on a new connection.
            if !e.is_send_error() {
                return Err(EtcdError::Unreachable(format!("{url}: {e}")));
            }
            *self.easy.get_mut() = Collect {
                limit,
                ..Collect::default()
            };
            let retried = self.easy.fresh_connect(true).and_then(|()| {
                let r = self.easy.perform();
                self.easy.fresh_connect(false)?;
                r
            });
            if let Err(e) = retried {
                return Err(EtcdError::Unreachable(format!("{url}: {e}")));
            }
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
            // Not an answer etcd gives: another endpoint may be etcd.
            None => Err(EtcdError::Unreachable(format!(
                "{url}: an answer without grpc-status (not etcd's gRPC?)"
            ))),
        }
    }

    /// One fenced transaction at `base` (`http://host:port`).
    pub fn txn(
        &mut self,
        base: &str,
        fence: &Fence<'_>,
        prefix: &[u8],
        ops: &[TxnOp],
    ) -> Result<TxnOutcome, EtcdError> {
        let request = encode_txn(fence, prefix, ops);
        let body = self.call(base, "Txn", &request, TXN_ANSWER_LIMIT)?;
        decode_txn_answer(body).map_err(|e| EtcdError::Bad(format!("{base} Txn: {e}")))
    }

    /// One key's last write, (revision, value), or `None` if it does not exist.
    pub fn get(&mut self, base: &str, key: &[u8]) -> Result<Option<(i64, Vec<u8>)>, EtcdError> {
        let request = frame(&RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        });
        let body = self.call(base, "Range", &request, TXN_ANSWER_LIMIT)?;
        let answer = unframe(body)
            .and_then(|m| RangeResponse::decode(m).map_err(|e| e.to_string()))
            .map_err(|e| EtcdError::Bad(format!("{base} Range: {e}")))?;
        Ok(answer
            .kvs
            .into_iter()
            .next()
            .map(|kv| (kv.mod_revision, kv.value)))
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
        out.extend(answer.kvs.into_iter().map(|mut kv| {
            kv.key.drain(..strip.min(kv.key.len()));
            (kv.key, kv.value)
        }));
        Ok((answer.more, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FENCE: Fence<'static> = Fence {
        leader_key: b"/g/leader",
        create_revision: 7,
        order_key: b"/g/order",
        order_revision: 41,
        id: b"txn-1",
    };

    #[test]
    fn a_transaction_encodes_as_etcd_reads_it() {
        let body = encode_txn(
            &FENCE,
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
        // The role (the election key's create revision) and the order (the order key's last
        // write), then the order key written last.
        assert_eq!(req.compare[0].key, b"/g/leader");
        assert_eq!(req.compare[0].create_revision, Some(7));
        assert_eq!((req.compare[0].result, req.compare[0].target), (0, 1));
        assert_eq!(req.compare[1].key, b"/g/order");
        assert_eq!(req.compare[1].mod_revision, Some(41));
        assert_eq!((req.compare[1].result, req.compare[1].target), (0, 2));
        let order = req.success[4].request_put.as_ref().expect("order put");
        assert_eq!(
            (&order.key[..], &order.value[..]),
            (&b"/g/order"[..], &b"txn-1"[..])
        );
        assert_eq!(req.success.len(), 5);
        // When a compare fails, the answer says what both keys hold.
        let reads: Vec<&[u8]> = req
            .failure
            .iter()
            .filter_map(|op| op.request_range.as_ref().map(|r| &r.key[..]))
            .collect();
        assert_eq!(reads, [&b"/g/leader"[..], b"/g/order"]);
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
        // The wire bytes of a compare, by hand: field 1 (result) is 0 and omitted, field 2
        // (target), field 3 (key), field 5 (create_revision) or 6 (mod_revision) even at 0.
        let compare = |target, create_revision, mod_revision| Compare {
            result: 0,
            target,
            key: b"k".to_vec(),
            create_revision,
            mod_revision,
        };
        let create = compare(1, Some(0), None).encode_to_vec();
        assert_eq!(create, [0x10, 1, 0x1a, 1, b'k', 0x28, 0]);
        let modified = compare(2, None, Some(0)).encode_to_vec();
        assert_eq!(modified, [0x10, 2, 0x1a, 1, b'k', 0x30, 0]);
    }

    fn framed(msg: &impl Message) -> Vec<u8> {
        frame(msg)
    }

    #[test]
    fn answers_decode_and_damaged_ones_are_errors() {
        let applied = framed(&TxnResponse {
            header: Some(ResponseHeader { revision: 42 }),
            succeeded: true,
            responses: Vec::new(),
        });
        assert_eq!(
            decode_txn_answer(&applied),
            Ok(TxnOutcome::Applied { revision: 42 })
        );
        let kv = |create_revision, mod_revision, value: &[u8]| KeyValue {
            key: Vec::new(),
            create_revision,
            mod_revision,
            value: value.to_vec(),
        };
        let range = |kvs| ResponseOp {
            response_range: Some(RangeResponse { kvs, more: false }),
        };
        let refused = framed(&TxnResponse {
            header: Some(ResponseHeader { revision: 50 }),
            succeeded: false,
            responses: vec![
                range(vec![kv(7, 7, b"m")]),
                range(vec![kv(3, 44, b"txn-1")]),
            ],
        });
        assert_eq!(
            decode_txn_answer(&refused),
            Ok(TxnOutcome::NotApplied {
                leader_created: Some(7),
                order: Some((44, b"txn-1".to_vec()))
            })
        );
        // Both keys gone (another member never wrote; the lease expired).
        assert_eq!(
            decode_txn_answer(&framed(&TxnResponse::default())),
            Ok(TxnOutcome::NotApplied {
                leader_created: None,
                order: None
            })
        );
        // Applied without a revision is not an answer etcd gives.
        let no_revision = framed(&TxnResponse {
            succeeded: true,
            ..TxnResponse::default()
        });
        assert!(decode_txn_answer(&no_revision).is_err());
        for bad in [
            &applied[..3],
            &applied[..applied.len() - 1],
            &[1, 0, 0, 0, 0][..],
        ] {
            assert!(decode_txn_answer(bad).is_err(), "{bad:?}");
        }
        let mut huge = vec![0, 0xff, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&applied[5..]);
        assert!(decode_txn_answer(&huge).is_err());
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(
            percent_decode("etcdserver: too many%20operations %E2%9C%93"),
            "etcdserver: too many operations ✓"
        );
        assert_eq!(percent_decode("100% sure %zz %4"), "100% sure %zz %4");
        assert_eq!(percent_decode("%+5 %-1"), "%+5 %-1");
    }
}
