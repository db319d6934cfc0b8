//! Retention policies: per repository pattern, which tags garbage collection may drop, whether
//! untagged manifests go, and which tags are immutable. The first policy whose pattern matches
//! a repository is its policy; a repository no pattern matches keeps everything.

use std::time::Duration;

use marina_oci::{RepoPattern, glob_matches};

/// One `[[retention]]` entry.
#[derive(Debug, Clone)]
pub struct Retention {
    /// The repositories it applies to, as written (for messages).
    pub pattern_text: String,
    /// The repositories it applies to.
    pub pattern: RepoPattern,
    /// Whether manifests no tag reaches are collected (after the grace period).
    pub delete_untagged: bool,
    /// Keep the newest this many tags, by push time.
    pub keep_last: Option<usize>,
    /// Keep tags pushed more recently than this.
    pub keep_younger_than: Option<Duration>,
    /// Tags matching these globs are always kept.
    pub keep_tags: Vec<String>,
    /// Tags matching these globs may be neither moved nor deleted.
    pub immutable_tags: Vec<String>,
}

/// A tag as retention sees it.
#[derive(Debug, Clone)]
pub(crate) struct TagAge<'a> {
    pub(crate) name: &'a str,
    /// When it was last pushed, in Unix milliseconds.
    pub(crate) at_ms: u64,
}

impl Retention {
    /// Whether the policy may drop tags at all (a keep rule bounds them).
    #[must_use]
    pub fn prunes_tags(&self) -> bool {
        self.keep_last.is_some() || self.keep_younger_than.is_some()
    }

    /// Whether `tag` is immutable under this policy.
    #[must_use]
    pub fn is_immutable(&self, tag: &str) -> bool {
        self.immutable_tags.iter().any(|g| glob_matches(g, tag))
    }

    /// The tags of `tags` this policy drops, each with the rule that let it go. Tags matching
    /// `keep_tags` or `immutable_tags`, the newest `keep_last`, and those younger than
    /// `keep_younger_than` stay; without `keep_last` or `keep_younger_than`, every tag stays.
    pub(crate) fn tags_to_drop<'a>(&self, tags: &[TagAge<'a>], now_ms: u64) -> Vec<&'a str> {
        if !self.prunes_tags() {
            return Vec::new();
        }
        let mut newest_first: Vec<&TagAge<'a>> = tags.iter().collect();
        newest_first.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.name.cmp(b.name)));
        newest_first
            .into_iter()
            .enumerate()
            .filter(|(rank, tag)| !self.keeps(*rank, tag, now_ms))
            .map(|(_, tag)| tag.name)
            .collect()
    }

    fn keeps(&self, rank: usize, tag: &TagAge<'_>, now_ms: u64) -> bool {
        let age = Duration::from_millis(now_ms.saturating_sub(tag.at_ms));
        self.keep_last.is_some_and(|n| rank < n)
            || self.keep_younger_than.is_some_and(|limit| age < limit)
            || self.keep_tags.iter().any(|g| glob_matches(g, tag.name))
            || self.is_immutable(tag.name)
    }

    /// What the dry run says of a tag this policy drops.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut rules = Vec::new();
        if let Some(n) = self.keep_last {
            rules.push(format!("keep_last = {n}"));
        }
        if let Some(d) = self.keep_younger_than {
            rules.push(format!("keep_younger_than = {}s", d.as_secs()));
        }
        format!("retention {:?}: {}", self.pattern_text, rules.join(", "))
    }
}

/// The policy of `repository`: the first whose pattern matches.
pub(crate) fn policy_for<'a>(policies: &'a [Retention], repository: &str) -> Option<&'a Retention> {
    policies.iter().find(|p| p.pattern.matches(repository))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Retention {
        Retention {
            pattern_text: "team/**".into(),
            pattern: RepoPattern::parse("team/**").unwrap(),
            delete_untagged: true,
            keep_last: Some(2),
            keep_younger_than: Some(Duration::from_secs(60)),
            keep_tags: vec!["latest".into()],
            immutable_tags: vec!["v*".into()],
        }
    }

    #[test]
    fn keeps_the_newest_the_young_the_named_and_the_immutable() {
        let now = 10_000_000;
        let tags = [
            TagAge {
                name: "a",
                at_ms: now - 1_000_000,
            },
            TagAge {
                name: "b",
                at_ms: now - 2_000_000,
            },
            TagAge {
                name: "c",
                at_ms: now - 3_000_000,
            },
            TagAge {
                name: "latest",
                at_ms: now - 9_000_000,
            },
            TagAge {
                name: "v1",
                at_ms: now - 9_000_000,
            },
            TagAge {
                name: "young",
                at_ms: now - 1_000,
            },
            TagAge {
                name: "old",
                at_ms: now - 8_000_000,
            },
        ];
        let mut dropped = policy().tags_to_drop(&tags, now);
        dropped.sort_unstable();
        // "young" and "a" are the newest two; "young" is also within a minute.
        assert_eq!(dropped, ["b", "c", "old"]);
    }

    #[test]
    fn without_a_bound_every_tag_stays() {
        let mut p = policy();
        p.keep_last = None;
        p.keep_younger_than = None;
        let tags = [TagAge {
            name: "x",
            at_ms: 0,
        }];
        assert!(p.tags_to_drop(&tags, 1 << 40).is_empty());
        assert!(p.is_immutable("v2.0") && !p.is_immutable("latest"));
        assert!(policy_for(&[p], "team/a/b").is_some());
    }
}
