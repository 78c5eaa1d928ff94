//! The console's files, embedded at build time: one page, its script
//! (the application, the NBD server for proxy-mode media and the terminal
//! widget) and its style. All written for hvsim; no third-party code.

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its Content-Type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files by path.
pub const ASSETS: &[(&str, Asset)] = &[
    (
        "/",
        Asset {
            content_type: HTML,
            body: include_bytes!("static/index.html"),
        },
    ),
    (
        "/ui/app.js",
        Asset {
            content_type: JS,
            body: include_bytes!("static/app.js"),
        },
    ),
    (
        "/ui/nbd.js",
        Asset {
            content_type: JS,
            body: include_bytes!("static/nbd.js"),
        },
    ),
    (
        "/ui/term.js",
        Asset {
            content_type: JS,
            body: include_bytes!("static/term.js"),
        },
    ),
    (
        "/ui/app.css",
        Asset {
            content_type: CSS,
            body: include_bytes!("static/app.css"),
        },
    ),
];

/// The file served at `path` (`/index.html` is `/`).
pub fn lookup(path: &str) -> Option<Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_embedded_files() {
        let page = std::str::from_utf8(lookup("/").unwrap().body).unwrap();
        for r in page
            .split("src=\"")
            .skip(1)
            .chain(page.split("href=\"").skip(1))
        {
            let p = r.split('"').next().unwrap();
            if p.starts_with('/') {
                assert!(lookup(p).is_some(), "{p} is not embedded");
            }
        }
        // No inline script: the Content-Security-Policy forbids it.
        assert!(!page.contains("<script>"));
        assert!(lookup("/nope.js").is_none());
    }
}
