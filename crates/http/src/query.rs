//! Query strings: repeated keys, percent-decoding, and numeric parameters.

use crate::error::ApiError;

/// A parsed query string.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (
                    percent_decode(&k.replace('+', " ")),
                    percent_decode(&v.replace('+', " ")),
                )
            })
            .collect();
        Self(pairs)
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Every value of `key`, in order.
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A non-negative whole number.
    pub(crate) fn number(&self, key: &str) -> Result<Option<usize>, ApiError> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| ApiError::pagination_invalid(key, &v)))
            .transpose()
    }
}

/// Encodes everything but unreserved characters (RFC 3986) as `%XX`, for a query value.
pub(crate) fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes; a malformed escape is kept as written (and then fails validation).
pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_repeats() {
        let q = Query::parse("tag=a&tag=b&mount=sha256%3Aab&x&n=10&s=a+b");
        assert_eq!(q.all("tag"), ["a", "b"]);
        assert_eq!(q.get("mount").unwrap(), "sha256:ab");
        assert_eq!(q.get("x").unwrap(), "");
        assert_eq!(q.number("n").unwrap(), Some(10));
        assert_eq!(q.get("s").unwrap(), "a b");
        assert!(q.get("missing").is_none());
    }

    #[test]
    fn encoded_values_decode_to_themselves() {
        for value in ["application/vnd.example+json", "a b&c=d", "plain-._~"] {
            let q = Query::parse(&format!("v={}", percent_encode(value)));
            assert_eq!(q.get("v").unwrap(), value);
        }
    }

    #[test]
    fn keeps_malformed_escapes() {
        assert_eq!(percent_decode("%2e%2e"), "..");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }
}
