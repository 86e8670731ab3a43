//! The page's files, embedded at build time: velib-web's own (`web/`) and Leaflet, which
//! `build.rs` installs from npm as `web/package-lock.json` pins it.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its path under `/`, e.g. `assets/leaflet.js`.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

macro_rules! npm {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/npm/node_modules/", $file))
    };
}

/// Every file the page loads.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/app.css"),
    },
    Asset {
        path: "assets/leaflet.js",
        content_type: "text/javascript; charset=utf-8",
        body: npm!("leaflet/dist/leaflet.js"),
    },
    Asset {
        path: "assets/leaflet.css",
        content_type: "text/css; charset=utf-8",
        body: npm!("leaflet/dist/leaflet.css"),
    },
    Asset {
        path: "assets/LICENSE-leaflet.txt",
        content_type: "text/plain; charset=utf-8",
        body: npm!("leaflet/LICENSE"),
    },
];

/// The embedded file at `path` (without the leading `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
