//! `Endpoint::parse` on any method, path and query: an endpoint or an OCI error, never a panic.
//! Input: the method, the path and the query, separated by newlines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marina_http::Endpoint;

fuzz_target!(|data: &str| {
    let mut lines = data.splitn(3, '\n');
    let (method, path) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let query = lines.next();
    let Ok(method) = axum::http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    if let Ok(endpoint) = Endpoint::parse(&method, path, query) {
        let _ = endpoint.template();
    }
});
