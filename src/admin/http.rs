//! HTTP/1.1 for the admin API, sans-IO: a request parser over the bytes received so far
//! (heads by `httparse`, bodies by `Content-Length` only) and a response writer.

use std::fmt::Write as _;

/// Most bytes one request (head and body) may have.
pub const MAX_REQUEST: usize = 8 << 20;
/// Most bytes a request head may have.
pub const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 32;

/// Headers on every response, the console's and the API's: scripts and styles only from the
/// node itself (no inline code), data only from its own API, no framing (clickjacking), no
/// MIME sniffing, no caching of API answers or of a console older than the binary. No CORS
/// header is ever sent, so other origins cannot read answers.
pub const SECURITY_HEADERS: &str =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\nCache-Control: no-store\r\n";

/// A parsed request, owning its parts (the input buffer is reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GET, POST, ...
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query string (after `?`), if any.
    pub query: String,
    /// The `Authorization` header's value.
    pub authorization: Option<String>,
    /// The `If-None-Match` header's value.
    pub if_none_match: Option<String>,
    /// Keep the connection open after the response.
    pub keep_alive: bool,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v, true))
        })
    }
}

/// A path segment, percent-decoded (`+` stays `+`, as in paths it is no space).
pub fn percent_decode_path(s: &str) -> String {
    percent_decode(s, false)
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request the server answers with an error and then closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, or a head `httparse` rejects (400).
    Malformed(String),
    /// Head or body over the limits (413; 431 is folded into 413 for simplicity).
    TooLarge,
    /// Transfer-Encoding other than none (501).
    Unsupported(String),
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::TooLarge => 413,
            HttpError::Unsupported(_) => 501,
        }
    }

    /// The message for the JSON error body.
    pub fn message(&self) -> String {
        match self {
            HttpError::Malformed(why) => format!("bad request: {why}"),
            HttpError::TooLarge => format!("request larger than {MAX_REQUEST} bytes"),
            HttpError::Unsupported(what) => format!("not supported: {what}"),
        }
    }
}

/// Parses one request from the start of `buf`. `Ok(None)`: more bytes are needed.
/// On success returns the request and the bytes it used (pipelined requests may follow).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(HttpError::TooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooLarge),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut content_length: Option<usize> = None;
    let mut authorization = None;
    let mut if_none_match = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed(format!("header {} is not UTF-8", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value)?;
            // RFC 9112 §6.3: differing lengths make the framing ambiguous (request
            // smuggling behind a proxy); repeats of one value are harmless.
            if content_length.is_some_and(|before| before != n) {
                return Err(HttpError::Malformed(
                    "differing Content-Length headers".into(),
                ));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Unsupported(format!("Transfer-Encoding {value}")));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(value.to_string());
        }
    }
    let total = head_len + content_length.unwrap_or(0);
    if buf.len() < total {
        return Ok(None);
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some((
        Request {
            method: req.method.unwrap_or("").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            authorization,
            if_none_match,
            keep_alive,
            body: buf[head_len..total].to_vec(),
        },
        total,
    )))
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6): no sign, no spaces inside, no list.
fn parse_content_length(value: &str) -> Result<usize, HttpError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed("bad Content-Length".into()));
    }
    // All digits: a parse failure can only be overflow, which is over the limit too.
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_REQUEST => Ok(n),
        _ => Err(HttpError::TooLarge),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// Appends the whole response (head and body) to `out`.
    pub fn write(&self, keep_alive: bool, out: &mut Vec<u8>) {
        let mut head = String::with_capacity(160 + SECURITY_HEADERS.len());
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if self.status == 401 {
            head.push_str("WWW-Authenticate: Bearer\r\n");
        }
        head.push_str(SECURITY_HEADERS);
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_split_anywhere_and_pipelined() {
        let one = b"POST /api/whitelist?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\nContent-Length: 4\r\n\r\nbody";
        for cut in 0..one.len() {
            assert_eq!(parse_request(&one[..cut]), Ok(None), "cut {cut}");
        }
        let mut two = one.to_vec();
        two.extend_from_slice(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        let (req, used) = parse_request(&two).expect("ok").expect("whole");
        assert_eq!(used, one.len());
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/whitelist");
        assert_eq!(req.query_param("x").as_deref(), Some("1"));
        assert_eq!(req.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(req.if_none_match, None);
        assert_eq!(req.body, b"body");
        assert!(req.keep_alive);
        let (req2, _) = parse_request(&two[used..]).expect("ok").expect("whole");
        assert_eq!(req2.path, "/healthz");
        assert!(!req2.keep_alive);
    }

    #[test]
    fn limits_and_garbage_are_errors_not_panics() {
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_REQUEST + 1
        );
        assert_eq!(parse_request(big.as_bytes()), Err(HttpError::TooLarge));
        let long_head = vec![b'a'; MAX_HEAD + 10];
        assert!(parse_request(&long_head).is_err());
        assert!(matches!(
            parse_request(b"\x00\x01\x02 garbage\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::Unsupported(_))
        ));
        for bad in ["x", "+15", "-1", "1 5", "15,15", ""] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(parse_request(req.as_bytes()), Err(HttpError::Malformed(_))),
                "Content-Length {bad:?}"
            );
        }
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 15\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        let same = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        let (req, _) = parse_request(same).expect("ok").expect("whole");
        assert_eq!(req.body, b"ok");
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let (req, _) = parse_request(b"GET /api/servers?plat=a%20b&z=%zz&q=1%2 HTTP/1.1\r\n\r\n")
            .expect("ok")
            .expect("whole");
        assert_eq!(req.query_param("plat").as_deref(), Some("a b"));
        assert_eq!(req.query_param("z").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("q").as_deref(), Some("1%2"));
        assert_eq!(req.query_param("none"), None);
        assert_eq!(percent_decode_path("a+b%2Fc%E5%8C%BA"), "a+b/c区");
    }

    #[test]
    fn responses_carry_length_and_connection() {
        let mut out = Vec::new();
        Response::error(404, "no").write(false, &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 14\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("{\"error\":\"no\"}"));
        assert!(text.contains("\r\nX-Frame-Options: DENY\r\n"));
        assert!(text.contains(
            "\r\nContent-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self';"
        ));
        assert!(!text.to_ascii_lowercase().contains("access-control-"));
    }
}
