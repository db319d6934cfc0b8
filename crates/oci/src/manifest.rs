//! Manifest inspection: checks that bytes are a manifest or index, and reads what it references
//! (config, layers, child manifests, subject) without re-serializing it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, MANIFEST_TYPES};

/// A content descriptor, as manifests and the referrers index carry them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// The size in bytes of the referenced content.
    pub size: u64,
    /// The artifact type, for descriptors of artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Where else the content may be fetched: such content need not be in the registry.
    #[serde(default, skip_serializing)]
    pub urls: Option<Vec<String>>,
}

/// Whether a manifest is a single image (or artifact), or an index of manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2), including artifacts.
    Image,
    /// An image index or Docker manifest list.
    Index,
}

/// What a validated manifest says, read from its bytes.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The media type, from the document or the request's `Content-Type`.
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// The config blob (images only).
    pub config: Option<Descriptor>,
    /// The layer blobs (images only).
    pub layers: Vec<Descriptor>,
    /// The child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    pub subject: Option<Descriptor>,
    /// The artifact type the document declares.
    pub artifact_type: Option<String>,
    /// The document's annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why bytes are not an acceptable manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or fields of the wrong type.
    #[error("manifest is not valid JSON of the manifest schema: {0}")]
    Json(String),
    /// `schemaVersion` is missing or not 2.
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    /// The media type is not one marina stores as a manifest.
    #[error("manifest media type {0:?} is not supported (accepted: {accepted})", accepted = MANIFEST_TYPES.join(", "))]
    UnsupportedMediaType(String),
    /// `Content-Type` and the document's `mediaType` disagree.
    #[error("Content-Type {content_type:?} does not match the manifest's mediaType {field:?}")]
    MediaTypeMismatch {
        /// The request header.
        content_type: String,
        /// The document's field.
        field: String,
    },
    /// A field the media type requires is missing.
    #[error("manifest of type {media_type} lacks the required field {field:?}")]
    MissingField {
        /// The manifest's media type.
        media_type: String,
        /// The missing field.
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Validates manifest bytes sent with the given `Content-Type` (if any).
    ///
    /// # Errors
    /// When the bytes are not a manifest or index marina accepts.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if doc.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let media_type = resolve_media_type(&doc, content_type)?;
        let kind = if media_type::is_index(&media_type) {
            ManifestKind::Index
        } else {
            ManifestKind::Image
        };
        let missing = |field| ManifestError::MissingField {
            media_type: media_type.clone(),
            field,
        };
        match kind {
            ManifestKind::Image if doc.config.is_none() => return Err(missing("config")),
            ManifestKind::Index if doc.manifests.is_none() => return Err(missing("manifests")),
            _ => {}
        }
        Ok(Self {
            kind,
            config: doc.config,
            layers: doc.layers.unwrap_or_default(),
            manifests: doc.manifests.unwrap_or_default(),
            subject: doc.subject,
            artifact_type: doc.artifact_type,
            annotations: doc.annotations,
            media_type,
        })
    }

    /// The blobs this manifest needs in its repository: config and layers, except layers
    /// that name external `urls` (non-distributable content).
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        let layers = self
            .layers
            .iter()
            .filter(|d| d.urls.as_ref().is_none_or(Vec::is_empty));
        self.config.iter().chain(layers)
    }

    /// The artifact type a referrers listing shows: `artifactType`, else the config's media type.
    #[must_use]
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }

    /// This manifest's descriptor in its subject's referrers index.
    #[must_use]
    pub fn referrer_descriptor(&self, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size,
            artifact_type: self.effective_artifact_type().map(str::to_owned),
            annotations: self.annotations.clone(),
            urls: None,
        }
    }
}

/// The document's `mediaType` wins; `Content-Type` must agree with it, or stands in for it.
fn resolve_media_type(doc: &Document, content_type: Option<&str>) -> Result<String, ManifestError> {
    let header = content_type
        .map(media_type::essence)
        .filter(|ct| MANIFEST_TYPES.contains(ct));
    let chosen = match (doc.media_type.as_deref(), header) {
        (Some(field), Some(ct)) if field != ct => {
            return Err(ManifestError::MediaTypeMismatch {
                content_type: ct.to_owned(),
                field: field.to_owned(),
            });
        }
        (Some(field), _) => field.to_owned(),
        (None, Some(ct)) => ct.to_owned(),
        (None, None) => infer_media_type(doc, content_type)?,
    };
    if MANIFEST_TYPES.contains(&chosen.as_str()) {
        Ok(chosen)
    } else {
        Err(ManifestError::UnsupportedMediaType(chosen))
    }
}

/// With neither field nor a manifest `Content-Type`, an OCI document is known by its shape.
fn infer_media_type(doc: &Document, content_type: Option<&str>) -> Result<String, ManifestError> {
    match content_type.map(media_type::essence) {
        Some(ct) if !ct.is_empty() && ct != "application/json" => {
            Err(ManifestError::UnsupportedMediaType(ct.to_owned()))
        }
        _ if doc.manifests.is_some() => Ok(media_type::OCI_INDEX.to_owned()),
        _ => Ok(media_type::OCI_MANIFEST.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D}","size":2}}]{extra}}}"#
        )
    }

    #[test]
    fn reads_an_image_manifest() {
        let m = Manifest::parse(image("").as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(
            m.effective_artifact_type(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn reads_subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":9}}"#
        );
        let m = Manifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().size, 9);
        assert_eq!(m.effective_artifact_type(), Some("application/x.sig"));
    }

    #[test]
    fn refuses_disagreeing_content_type() {
        let err = Manifest::parse(image("").as_bytes(), Some(DOCKER_MANIFEST)).unwrap_err();
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }));
    }

    #[test]
    fn infers_an_index_without_media_type() {
        let doc = r#"{"schemaVersion":2,"manifests":[]}"#;
        let m = Manifest::parse(doc.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        assert_eq!(m.kind, ManifestKind::Index);
    }

    #[test]
    fn refuses_malformed_documents() {
        for (doc, ct) in [
            ("not json", None),
            ("[]", None),
            (r#"{"schemaVersion":1}"#, None),
            (r#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
                None,
            ),
            (
                r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1}}"#,
                None,
            ),
            (
                r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:aa","size":-1}}"#,
                None,
            ),
        ] {
            assert!(
                Manifest::parse(doc.as_bytes(), ct).is_err(),
                "{doc} was accepted"
            );
        }
    }

    #[test]
    fn layers_with_urls_are_not_required() {
        let extra = format!(
            r#","layers":[{{"mediaType":"x","digest":"{D}","size":1,"urls":["https://example.com/l"]}}]"#
        );
        let doc = image("").replace(r#""layers":["#, r#""ignored":["#);
        let doc = doc.trim_end_matches('}').to_owned() + &extra + "}";
        let m = Manifest::parse(doc.as_bytes(), None).unwrap();
        assert_eq!(m.required_blobs().count(), 1);
    }
}
