//! An event, in the fields of Distribution's notification envelope: what was done (`action`)
//! to what (`target`), by whom (`actor`), in which request, on which instance (`source`).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest was stored (with its tag, if pushed by tag).
    Push,
    /// A manifest or blob was read.
    Pull,
    /// A manifest, tag or blob was deleted.
    Delete,
}

impl Action {
    /// The action as configuration and bodies name it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Pull => "pull",
            Self::Delete => "delete",
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Target {
    /// The content's media type, when known.
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// Its size in bytes, when known.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Its digest (empty for a tag delete).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The same as `size` (Distribution sends both).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length: u64,
    /// The repository.
    pub repository: String,
    /// Where the content is served.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The tag, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The request that caused the event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestInfo {
    /// The request id marina logged (`X-Request-Id`).
    pub id: String,
    /// The client's address.
    pub addr: String,
    /// The `Host` the client asked for.
    pub host: String,
    /// The HTTP method.
    pub method: String,
    /// The client's `User-Agent`.
    pub useragent: String,
}

/// Who caused the event: the signed-in user, or nobody (auth off, or anonymous).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    /// The user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The instance that handled the request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    /// The host name and listening address of the instance.
    pub addr: String,
    /// The instance's random id, new at each start.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    /// A random id, the same in every delivery of this event.
    pub id: String,
    /// When it happened (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    /// What was done.
    pub action: Action,
    /// To what.
    pub target: Target,
    /// In which request.
    pub request: RequestInfo,
    /// By whom.
    pub actor: Actor,
    /// On which instance.
    pub source: Source,
}

impl Event {
    /// A new event of `action` on `target`, happening now, with a fresh id.
    #[must_use]
    pub fn new(
        action: Action,
        target: Target,
        request: RequestInfo,
        actor: Actor,
        source: Source,
    ) -> Self {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the OS random source works");
        Self {
            id: hex::encode(id),
            timestamp: marina_oci::time::rfc3339_millis(SystemTime::now()),
            action,
            target,
            request,
            actor,
            source,
        }
    }
}
