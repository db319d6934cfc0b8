//! Parsing a request line into an [`Endpoint`]: method, path (read from the right, since
//! repository names contain slashes) and query, all validated before any handler runs.

use axum::http::Method;
use marina_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use marina_registry::UploadId;

use crate::error::ApiError;
use crate::query::Query;

/// Every operation of the API, with its validated parameters (named as in the spec).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`.
    Base,
    /// `GET /v2/_catalog`.
    Catalog {
        n: Option<usize>,
        last: Option<String>,
    },
    /// `GET /v2/<name>/tags/list`.
    ListTags {
        name: RepoName,
        n: Option<usize>,
        last: Option<String>,
    },
    /// `GET` or `HEAD /v2/<name>/manifests/<reference>`.
    GetManifest {
        name: RepoName,
        reference: Reference,
        head: bool,
    },
    /// `PUT /v2/<name>/manifests/<reference>[?tag=...]`.
    PutManifest {
        name: RepoName,
        reference: Reference,
        tags: Vec<Tag>,
    },
    /// `DELETE /v2/<name>/manifests/<reference>`.
    DeleteManifest {
        name: RepoName,
        reference: Reference,
    },
    /// `GET` or `HEAD /v2/<name>/blobs/<digest>`.
    GetBlob {
        name: RepoName,
        digest: Digest,
        head: bool,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    DeleteBlob { name: RepoName, digest: Digest },
    /// `POST /v2/<name>/blobs/uploads/` with its options.
    StartUpload { name: RepoName, start: UploadStart },
    /// `GET /v2/<name>/blobs/uploads/<id>`.
    GetUpload { name: RepoName, id: UploadId },
    /// `PATCH /v2/<name>/blobs/uploads/<id>`.
    PatchUpload { name: RepoName, id: UploadId },
    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`.
    FinishUpload {
        name: RepoName,
        id: UploadId,
        digest: Digest,
    },
    /// `DELETE /v2/<name>/blobs/uploads/<id>`.
    CancelUpload { name: RepoName, id: UploadId },
    /// `GET /v2/<name>/referrers/<digest>[?artifactType=&n=&last=]`.
    Referrers {
        name: RepoName,
        subject: Digest,
        artifact_type: Option<String>,
        n: Option<usize>,
        last: Option<String>,
    },
}

/// What a `POST` to the uploads endpoint asks for.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// A whole blob in this request (`?digest=`).
    Monolithic(Digest),
    /// A mount (`?mount=[&from=]`), falling back to a session.
    Mount {
        digest: Digest,
        from: Option<RepoName>,
        algorithm: Algorithm,
    },
    /// A session for later chunks.
    Session(Algorithm),
}

/// The path's shape, before the method is considered.
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

impl Endpoint {
    /// Parses a request. Unknown paths, bad names, digests and parameters become OCI errors.
    ///
    /// # Errors
    /// The [`ApiError`] to answer with.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Self, ApiError> {
        let route = route(path).ok_or_else(|| ApiError::not_found(path))?;
        let q = Query::parse(query.unwrap_or(""));
        let m = method.as_str();
        let endpoint = match (m, route) {
            ("GET" | "HEAD", Route::Base) => Self::Base,
            ("GET", Route::Catalog) => Self::Catalog {
                n: q.number("n")?,
                last: q.get("last"),
            },
            ("GET", Route::Tags(name)) => Self::ListTags {
                name: repo(name)?,
                n: q.number("n")?,
                last: q.get("last"),
            },
            ("GET" | "HEAD", Route::Manifest(name, r)) => Self::GetManifest {
                name: repo(name)?,
                reference: lookup_reference(r)?,
                head: m == "HEAD",
            },
            ("PUT", Route::Manifest(name, r)) => Self::PutManifest {
                name: repo(name)?,
                reference: put_reference(r)?,
                tags: tag_params(&q)?,
            },
            ("DELETE", Route::Manifest(name, r)) => Self::DeleteManifest {
                name: repo(name)?,
                reference: lookup_reference(r)?,
            },
            ("GET" | "HEAD", Route::Blob(name, d)) => Self::GetBlob {
                name: repo(name)?,
                digest: digest(d)?,
                head: m == "HEAD",
            },
            ("DELETE", Route::Blob(name, d)) => Self::DeleteBlob {
                name: repo(name)?,
                digest: digest(d)?,
            },
            ("POST", Route::Uploads(name)) => Self::StartUpload {
                name: repo(name)?,
                start: upload_start(&q)?,
            },
            ("GET", Route::Upload(name, id)) => Self::GetUpload {
                name: repo(name)?,
                id: upload_id(id)?,
            },
            ("PATCH", Route::Upload(name, id)) => Self::PatchUpload {
                name: repo(name)?,
                id: upload_id(id)?,
            },
            ("PUT", Route::Upload(name, id)) => {
                let digest = q
                    .get("digest")
                    .ok_or_else(|| ApiError::digest_invalid("the digest parameter is required"))?;
                Self::FinishUpload {
                    name: repo(name)?,
                    id: upload_id(id)?,
                    digest: digest_param(&digest)?,
                }
            }
            ("DELETE", Route::Upload(name, id)) => Self::CancelUpload {
                name: repo(name)?,
                id: upload_id(id)?,
            },
            ("GET", Route::Referrers(name, d)) => Self::Referrers {
                name: repo(name)?,
                subject: digest(d)?,
                artifact_type: q.get("artifactType"),
                n: q.number("n")?,
                last: q.get("last"),
            },
            _ => return Err(ApiError::method_not_allowed(method, path)),
        };
        Ok(endpoint)
    }

    /// What the request needs to be allowed: the repository and the action it does there.
    /// `None` for the base and the catalog, which need no repository (the catalog is filtered
    /// by what the caller may pull). A mount needs push on its target; pull on `from` is
    /// checked when the mount is tried, and without it the mount falls back to a session.
    #[must_use]
    pub fn scope(&self) -> Option<(&RepoName, marina_auth::Action)> {
        use marina_auth::Action::{Delete, Pull, Push};
        Some(match self {
            Self::Base | Self::Catalog { .. } => return None,
            Self::ListTags { name, .. }
            | Self::GetManifest { name, .. }
            | Self::GetBlob { name, .. }
            | Self::Referrers { name, .. } => (name, Pull),
            Self::PutManifest { name, .. }
            | Self::StartUpload { name, .. }
            | Self::GetUpload { name, .. }
            | Self::PatchUpload { name, .. }
            | Self::FinishUpload { name, .. }
            | Self::CancelUpload { name, .. } => (name, Push),
            Self::DeleteManifest { name, .. } | Self::DeleteBlob { name, .. } => (name, Delete),
        })
    }

    /// Whether the request changes what is stored: every push, mount, manifest PUT and DELETE
    /// (what read-only mode refuses). An upload session's status is a read.
    #[must_use]
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Self::PutManifest { .. }
                | Self::StartUpload { .. }
                | Self::PatchUpload { .. }
                | Self::FinishUpload { .. }
                | Self::CancelUpload { .. }
                | Self::DeleteManifest { .. }
                | Self::DeleteBlob { .. }
        )
    }

    /// The route template, for logs and metrics (never the repository name).
    #[must_use]
    pub fn template(&self) -> &'static str {
        match self {
            Self::Base => "/v2/",
            Self::Catalog { .. } => "/v2/_catalog",
            Self::ListTags { .. } => "/v2/<name>/tags/list",
            Self::GetManifest { .. } | Self::PutManifest { .. } | Self::DeleteManifest { .. } => {
                "/v2/<name>/manifests/<reference>"
            }
            Self::GetBlob { .. } | Self::DeleteBlob { .. } => "/v2/<name>/blobs/<digest>",
            Self::StartUpload { .. } => "/v2/<name>/blobs/uploads/",
            Self::GetUpload { .. }
            | Self::PatchUpload { .. }
            | Self::FinishUpload { .. }
            | Self::CancelUpload { .. } => "/v2/<name>/blobs/uploads/<id>",
            Self::Referrers { .. } => "/v2/<name>/referrers/<digest>",
        }
    }
}

/// Reads the path from the right: `<name>/<kind>/<last>`.
fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::Uploads(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        "uploads" => name
            .strip_suffix("/blobs")
            .map(|name| Route::Upload(name, last)),
        _ => None,
    }
}

fn repo(raw: &str) -> Result<RepoName, ApiError> {
    raw.parse().map_err(|e| ApiError::name_invalid(&e))
}

fn digest(raw: &str) -> Result<Digest, ApiError> {
    digest_param(&crate::query::percent_decode(raw))
}

fn digest_param(raw: &str) -> Result<Digest, ApiError> {
    raw.parse().map_err(ApiError::digest_invalid)
}

/// For reads and deletes: a malformed tag can name nothing, so it is unknown (404); a
/// malformed digest is a bad request (400).
fn lookup_reference(raw: &str) -> Result<Reference, ApiError> {
    let decoded = crate::query::percent_decode(raw);
    if decoded.contains(':') {
        return Ok(Reference::Digest(digest_param(&decoded)?));
    }
    decoded
        .parse()
        .map_err(|_| ApiError::manifest_unknown_tag(&decoded))
}

/// For pushes: a malformed reference is a bad request.
fn put_reference(raw: &str) -> Result<Reference, ApiError> {
    let decoded = crate::query::percent_decode(raw);
    if decoded.contains(':') {
        return Ok(Reference::Digest(digest_param(&decoded)?));
    }
    decoded.parse().map_err(|e| ApiError::tag_invalid(&e))
}

fn tag_params(q: &Query) -> Result<Vec<Tag>, ApiError> {
    q.all("tag")
        .iter()
        .map(|t| t.parse().map_err(|e| ApiError::tag_invalid(&e)))
        .collect()
}

fn upload_id(raw: &str) -> Result<UploadId, ApiError> {
    raw.parse()
        .map_err(|e: marina_registry::Error| ApiError::from(e))
}

fn upload_start(q: &Query) -> Result<UploadStart, ApiError> {
    let algorithm = match q.get("digest-algorithm") {
        Some(a) => a.parse().map_err(ApiError::digest_invalid)?,
        None => Algorithm::Sha256,
    };
    if let Some(d) = q.get("mount") {
        let from = q
            .get("from")
            .map(|f| f.parse().map_err(|e| ApiError::name_invalid(&e)))
            .transpose()?;
        return Ok(UploadStart::Mount {
            digest: digest_param(&d)?,
            from,
            algorithm,
        });
    }
    match q.get("digest") {
        Some(d) => Ok(UploadStart::Monolithic(digest_param(&d)?)),
        None => Ok(UploadStart::Session(algorithm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ID: &str = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";

    fn ok(method: Method, path: &str, query: Option<&str>) -> Endpoint {
        Endpoint::parse(&method, path, query).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"))
    }

    fn status(method: Method, path: &str) -> u16 {
        Endpoint::parse(&method, path, None)
            .expect_err(path)
            .status()
            .as_u16()
    }

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_route() {
        let d: Digest = D.parse().unwrap();
        let table = [
            (Method::GET, "/v2/".to_owned(), None, Endpoint::Base),
            (Method::GET, "/v2".to_owned(), None, Endpoint::Base),
            (Method::GET, "/v2/_catalog".to_owned(), Some("n=5&last=a"), Endpoint::Catalog { n: Some(5), last: Some("a".into()) }),
            (Method::GET, "/v2/a/b/tags/list".to_owned(), None, Endpoint::ListTags { name: name("a/b"), n: None, last: None }),
            (Method::GET, "/v2/a/manifests/latest".to_owned(), None, Endpoint::GetManifest { name: name("a"), reference: "latest".parse().unwrap(), head: false }),
            (Method::HEAD, format!("/v2/a/manifests/{D}"), None, Endpoint::GetManifest { name: name("a"), reference: Reference::Digest(d.clone()), head: true }),
            (Method::PUT, "/v2/x/manifests/v1".to_owned(), Some("tag=a&tag=b"), Endpoint::PutManifest { name: name("x"), reference: "v1".parse().unwrap(), tags: vec!["a".parse().unwrap(), "b".parse().unwrap()] }),
            (Method::DELETE, "/v2/x/manifests/v1".to_owned(), None, Endpoint::DeleteManifest { name: name("x"), reference: "v1".parse().unwrap() }),
            (Method::GET, format!("/v2/a/b/c/blobs/{D}"), None, Endpoint::GetBlob { name: name("a/b/c"), digest: d.clone(), head: false }),
            (Method::GET, "/v2/a/blobs/sha256%3Ae3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(), None, Endpoint::GetBlob { name: name("a"), digest: d.clone(), head: false }),
            (Method::DELETE, format!("/v2/a/blobs/{D}"), None, Endpoint::DeleteBlob { name: name("a"), digest: d.clone() }),
            (Method::POST, "/v2/a/blobs/uploads/".to_owned(), None, Endpoint::StartUpload { name: name("a"), start: UploadStart::Session(Algorithm::Sha256) }),
            (Method::POST, "/v2/a/blobs/uploads".to_owned(), Some("digest-algorithm=sha512"), Endpoint::StartUpload { name: name("a"), start: UploadStart::Session(Algorithm::Sha512) }),
            (Method::POST, "/v2/a/blobs/uploads/".to_owned(), Some(&format!("digest={D}")), Endpoint::StartUpload { name: name("a"), start: UploadStart::Monolithic(d.clone()) }),
            (Method::POST, "/v2/a/blobs/uploads/".to_owned(), Some(&format!("mount={D}&from=b/c")), Endpoint::StartUpload { name: name("a"), start: UploadStart::Mount { digest: d.clone(), from: Some(name("b/c")), algorithm: Algorithm::Sha256 } }),
            (Method::GET, format!("/v2/a/blobs/uploads/{ID}"), None, Endpoint::GetUpload { name: name("a"), id: ID.parse().unwrap() }),
            (Method::PATCH, format!("/v2/a/blobs/uploads/{ID}"), None, Endpoint::PatchUpload { name: name("a"), id: ID.parse().unwrap() }),
            (Method::PUT, format!("/v2/a/blobs/uploads/{ID}"), Some(&format!("digest={D}")), Endpoint::FinishUpload { name: name("a"), id: ID.parse().unwrap(), digest: d.clone() }),
            (Method::DELETE, format!("/v2/a/blobs/uploads/{ID}"), None, Endpoint::CancelUpload { name: name("a"), id: ID.parse().unwrap() }),
            (Method::GET, format!("/v2/a/referrers/{D}"), Some("artifactType=application%2Fx"), Endpoint::Referrers { name: name("a"), subject: d.clone(), artifact_type: Some("application/x".into()), n: None, last: None }),
            (Method::GET, format!("/v2/a/referrers/{D}"), Some("n=2&last=sha256-ab"), Endpoint::Referrers { name: name("a"), subject: d.clone(), artifact_type: None, n: Some(2), last: Some("sha256-ab".into()) }),
            (Method::GET, "/v2/manifests/manifests/latest".to_owned(), None, Endpoint::GetManifest { name: name("manifests"), reference: "latest".parse().unwrap(), head: false }),
            (Method::GET, "/v2/blobs/tags/list".to_owned(), None, Endpoint::ListTags { name: name("blobs"), n: None, last: None }),
        ];
        for (method, path, query, expected) in table {
            assert_eq!(ok(method, &path, query), expected, "{path}");
        }
    }

    #[test]
    fn refuses_bad_input_with_the_right_status() {
        let cases = [
            (Method::GET, "/v2/../etc/passwd/manifests/latest", 400),
            (Method::GET, "/v2/%2e%2e/manifests/latest", 400),
            (Method::GET, "/v2/UPPER/manifests/latest", 400),
            (Method::GET, "/v2/a/manifests/.INVALID_MANIFEST_NAME", 404),
            (Method::GET, "/v2/a/manifests/sha256:totallywrong", 400),
            (Method::PUT, "/v2/a/manifests/bad%00tag", 400),
            (Method::GET, "/v2/a/blobs/sha256:abc", 400),
            (
                Method::GET,
                "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
                400,
            ),
            (Method::GET, "/v2/a/blobs/uploads/../../x", 404),
            (Method::PATCH, "/v2/a/blobs/uploads/not-an-id", 404),
            (Method::GET, "/v2/a/unknown/thing", 404),
            (Method::GET, "/nope", 404),
            (Method::POST, "/v2/a/manifests/latest", 405),
            (
                Method::PUT,
                "/v2/a/blobs/uploads/0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
                400,
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(status(method, path), expected, "{path}");
        }
        let long = format!("/v2/{}/tags/list", "a".repeat(256));
        assert_eq!(status(Method::GET, &long), 400);
        assert_eq!(
            Endpoint::parse(&Method::GET, "/v2/_catalog", Some("n=-1"))
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
    }
}
