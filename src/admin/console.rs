//! The operator console: one page, its script and its style sheet, compiled into the binary
//! (no build step, no CDN: it works offline). The page drives the admin API with the bearer
//! token the operator signs in with; see `docs/ADMIN.md`.

use super::http::Response;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");
const FAVICON_SVG: &str = include_str!("console/favicon.svg");

/// The console file served at `path` (`/`, `/console.js`, `/console.css`, `/favicon.svg`), if
/// it is one.
pub fn asset(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/" => ("text/html; charset=utf-8", INDEX_HTML),
        "/console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "/console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        "/favicon.svg" => ("image/svg+xml", FAVICON_SVG),
        _ => return None,
    };
    Some(Response {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_three_files_and_nothing_else() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/console.js", "text/javascript"),
            ("/console.css", "text/css"),
            ("/favicon.svg", "image/svg+xml"),
        ] {
            let r = asset(path).expect(path);
            assert!(r.content_type.starts_with(kind), "{path}");
            assert!(!r.body.is_empty(), "{path}");
        }
        assert!(asset("/index.html").is_none());
        assert!(asset("/console.js/").is_none());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        // The Content-Security-Policy forbids them: the page would break in the browser.
        let html = INDEX_HTML.to_ascii_lowercase();
        assert_eq!(html.matches("<script").count(), 1, "one script tag");
        assert!(html.contains("<script src=\"/console.js\"></script>"));
        assert!(!html.contains("<style"));
        assert!(!html.contains(" style="));
        assert!(!html.contains(" onclick="));
        assert!(!html.contains("javascript:"));
    }
}
