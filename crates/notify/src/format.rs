//! The bodies an endpoint receives: Distribution's envelope (what existing consumers parse)
//! or a structured CloudEvents 1.0 event.

use serde_json::json;

use crate::Event;

/// The form of the bodies an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"events":[...]}`, `application/vnd.docker.distribution.events.v1+json`.
    Distribution,
    /// One structured CloudEvent, `application/cloudevents+json`.
    CloudEvents,
}

impl Format {
    /// Reads the configured name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "distribution" => Some(Self::Distribution),
            "cloudevents" => Some(Self::CloudEvents),
            _ => None,
        }
    }

    /// The body's `Content-Type`.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Distribution => "application/vnd.docker.distribution.events.v1+json",
            Self::CloudEvents => "application/cloudevents+json",
        }
    }

    /// The body delivering `event`.
    pub(crate) fn body(self, event: &Event) -> Vec<u8> {
        let value = match self {
            Self::Distribution => json!({ "events": [event] }),
            Self::CloudEvents => cloud_event(event),
        };
        serde_json::to_vec(&value).expect("events serialize")
    }
}

/// A structured CloudEvent: the required `specversion`, `id`, `source` and `type`, the
/// optional `time` and `subject`, and the envelope's fields as `data`.
fn cloud_event(event: &Event) -> serde_json::Value {
    let target = &event.target;
    let subject = match (&target.tag, target.digest.is_empty()) {
        (Some(tag), _) => format!("{}:{tag}", target.repository),
        (None, false) => format!("{}@{}", target.repository, target.digest),
        (None, true) => target.repository.clone(),
    };
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": format!("/marina/{}", event.source.instance_id),
        "type": format!("io.marina.registry.{}", event.action.as_str()),
        "time": event.timestamp,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": {
            "action": event.action,
            "target": event.target,
            "request": event.request,
            "actor": event.actor,
            "source": event.source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Actor, RequestInfo, Source, Target};

    fn event() -> Event {
        let target = Target {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 321,
            digest: "sha256:ab".into(),
            length: 321,
            repository: "team/app".into(),
            url: "http://r/v2/team/app/manifests/sha256:ab".into(),
            tag: Some("v1".into()),
        };
        let actor = Actor {
            name: Some("alice".into()),
        };
        Event::new(
            Action::Push,
            target,
            RequestInfo::default(),
            actor,
            Source::default(),
        )
    }

    #[test]
    fn the_distribution_envelope_carries_the_event_as_is() {
        let event = event();
        let body: serde_json::Value =
            serde_json::from_slice(&Format::Distribution.body(&event)).unwrap();
        let sent: Event = serde_json::from_value(body["events"][0].clone()).unwrap();
        assert_eq!(sent, event);
        assert_eq!(
            body["events"][0]["target"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(body["events"][0]["action"], "push");
        assert_eq!(body["events"][0]["actor"]["name"], "alice");
    }

    #[test]
    fn a_cloud_event_has_the_required_attributes() {
        let event = event();
        let body: serde_json::Value =
            serde_json::from_slice(&Format::CloudEvents.body(&event)).unwrap();
        for required in ["specversion", "id", "source", "type"] {
            assert!(
                body[required].as_str().is_some_and(|v| !v.is_empty()),
                "{required}"
            );
        }
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], event.id.as_str());
        assert_eq!(body["subject"], "team/app:v1");
        assert_eq!(body["data"]["target"]["digest"], "sha256:ab");
    }
}
