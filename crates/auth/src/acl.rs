//! The access rules: which identities may pull, push or delete in which repositories. A pure
//! function of the rules, the groups and the request; nothing here reads a request or a store.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use marina_oci::RepoPattern;
use serde::Deserialize;

use crate::Identity;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload, mount into, and put manifests and tags.
    Push,
    /// Any DELETE.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 3] = [Self::Pull, Self::Push, Self::Delete];

    /// The name in rules and token scopes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pull" => Ok(Self::Pull),
            "push" => Ok(Self::Push),
            "delete" => Ok(Self::Delete),
            other => Err(format!("unknown action {other:?} (pull, push or delete)")),
        }
    }
}

/// One `[[auth.access]]` rule as the configuration file writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Repository patterns: `*` matches within one path component, `**` any number of them.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Users it applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups it applies to (`[auth.groups]`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether it applies to everyone, signed in or not.
    #[serde(default)]
    pub anonymous: bool,
    /// Whether it applies to every signed-in user.
    #[serde(default)]
    pub authenticated: bool,
    /// What it allows: `pull`, `push`, `delete`.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// A rule that cannot be used: start-up stops, naming it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("[[auth.access]] rule {rule}: {reason}")]
pub struct RuleError {
    /// The rule, from 1, in file order.
    pub rule: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// A checked rule.
#[derive(Debug, Clone)]
struct Rule {
    patterns: Vec<RepoPattern>,
    users: BTreeSet<String>,
    anonymous: bool,
    authenticated: bool,
    actions: BTreeSet<Action>,
}

/// The access rules and groups in force.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    /// No rule at all: signed-in users may do everything, anonymous users nothing.
    open: bool,
    /// The users `[auth] admins` names (groups expanded): they may run the admin jobs.
    admins: BTreeSet<String>,
}

impl Acl {
    /// Checks the rules against the groups.
    ///
    /// # Errors
    /// The first rule with an unknown action or group, an empty or malformed pattern, or no
    /// repository, subject or action.
    pub fn new(
        rules: &[AccessRule],
        groups: &HashMap<String, Vec<String>>,
    ) -> Result<Self, RuleError> {
        let checked = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                Rule::check(rule, groups).map_err(|reason| RuleError {
                    rule: i + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            open: checked.is_empty(),
            rules: checked,
            admins: BTreeSet::new(),
        })
    }

    /// Names the administrators: users, or groups of `groups` (their members).
    #[must_use]
    pub fn with_admins(mut self, names: &[String], groups: &HashMap<String, Vec<String>>) -> Self {
        for name in names {
            self.admins.insert(name.clone());
            self.admins
                .extend(groups.get(name).into_iter().flatten().cloned());
        }
        self
    }

    /// Whether `who` may run the admin jobs (GC, fsck, du) from another machine: a user that
    /// `[auth] admins` names; with no admins and no rules, any signed-in user.
    #[must_use]
    pub fn is_admin(&self, who: &Identity) -> bool {
        match who {
            Identity::Anonymous => false,
            Identity::User(name) if self.admins.is_empty() => self.open && !name.is_empty(),
            Identity::User(name) => self.admins.contains(name),
        }
    }

    /// Whether `who` may do `action` in `repository`.
    #[must_use]
    pub fn may(&self, who: &Identity, repository: &str, action: Action) -> bool {
        if self.open {
            return matches!(who, Identity::User(_));
        }
        self.rules.iter().any(|rule| {
            rule.actions.contains(&action) && rule.covers(who) && rule.matches(repository)
        })
    }

    /// The actions `who` may do in `repository`.
    #[must_use]
    pub fn allowed(&self, who: &Identity, repository: &str) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|action| self.may(who, repository, *action))
            .collect()
    }

    /// Whether `who` may pull from some repository (a catalog for nobody is a 401 then).
    #[must_use]
    pub fn may_pull_somewhere(&self, who: &Identity) -> bool {
        if self.open {
            return matches!(who, Identity::User(_));
        }
        self.rules
            .iter()
            .any(|rule| rule.actions.contains(&Action::Pull) && rule.covers(who))
    }
}

impl Rule {
    fn check(rule: &AccessRule, groups: &HashMap<String, Vec<String>>) -> Result<Self, String> {
        if rule.repositories.is_empty() {
            return Err("it names no repositories".into());
        }
        let patterns = rule
            .repositories
            .iter()
            .map(|p| RepoPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut users: BTreeSet<String> = rule.users.iter().cloned().collect();
        for group in &rule.groups {
            let members = groups
                .get(group)
                .ok_or_else(|| format!("unknown group {group:?} (not in [auth.groups])"))?;
            users.extend(members.iter().cloned());
        }
        let names_someone = !rule.users.is_empty() || !rule.groups.is_empty();
        if !names_someone && !rule.anonymous && !rule.authenticated {
            return Err("it names nobody: set users, groups, anonymous or authenticated".into());
        }
        if rule.actions.is_empty() {
            return Err("it allows no actions".into());
        }
        let actions = rule
            .actions
            .iter()
            .map(|a| a.parse::<Action>())
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Self {
            patterns,
            users,
            anonymous: rule.anonymous,
            authenticated: rule.authenticated,
            actions,
        })
    }

    /// Whether the rule applies to `who`: what anonymous users may, signed-in users may too.
    fn covers(&self, who: &Identity) -> bool {
        match who {
            Identity::Anonymous => self.anonymous,
            Identity::User(name) => {
                self.anonymous || self.authenticated || self.users.contains(name)
            }
        }
    }

    fn matches(&self, repository: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(repository))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repos: &[&str], actions: &[&str]) -> AccessRule {
        AccessRule {
            repositories: repos.iter().map(|s| (*s).to_owned()).collect(),
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            ..AccessRule::default()
        }
    }

    fn user(name: &str) -> Identity {
        Identity::User(name.to_owned())
    }

    fn example() -> Acl {
        let public = AccessRule {
            anonymous: true,
            ..rule(&["public/**"], &["pull"])
        };
        let team = AccessRule {
            groups: vec!["ci".into()],
            users: vec!["alice".into()],
            ..rule(&["team-a/**", "base/*"], &["pull", "push", "delete"])
        };
        let groups = HashMap::from([("ci".to_owned(), vec!["builder".to_owned()])]);
        Acl::new(&[public, team], &groups).unwrap()
    }

    #[test]
    fn admins_are_named_users_and_group_members_only() {
        let groups = HashMap::from([("ops".to_owned(), vec!["olga".to_owned()])]);
        let acl = example().with_admins(&["ops".to_owned(), "root".to_owned()], &groups);
        assert!(acl.is_admin(&user("olga")));
        assert!(acl.is_admin(&user("root")));
        assert!(!acl.is_admin(&user("alice")), "rules grant no admin");
        assert!(!acl.is_admin(&Identity::Anonymous));
        assert!(
            !example().is_admin(&user("alice")),
            "no admins named: nobody"
        );
        let open = Acl::new(&[], &HashMap::new()).unwrap();
        assert!(
            open.is_admin(&user("anyone")),
            "no rules: signed-in users do everything"
        );
        assert!(!open.is_admin(&Identity::Anonymous));
    }

    #[test]
    fn the_example_rules_allow_what_they_say() {
        let acl = example();
        let anon = Identity::Anonymous;
        assert!(acl.may(&anon, "public/x/y", Action::Pull));
        assert!(!acl.may(&anon, "public/x", Action::Push));
        assert!(
            acl.may(&user("carol"), "public/x", Action::Pull),
            "anonymous implies signed-in"
        );
        assert!(!acl.may(&user("carol"), "team-a/x", Action::Pull));
        assert!(
            acl.may(&user("builder"), "team-a/x/y", Action::Delete),
            "through group ci"
        );
        assert!(
            acl.may(&user("alice"), "team-a", Action::Push),
            "** matches zero components"
        );
        assert!(acl.may(&user("alice"), "base/debian", Action::Pull));
        assert!(
            !acl.may(&user("alice"), "base/debian/slim", Action::Pull),
            "* is one component"
        );
        assert!(!acl.may(&user("alice"), "base", Action::Pull));
        assert_eq!(acl.allowed(&user("alice"), "public/p"), [Action::Pull]);
        assert!(acl.may_pull_somewhere(&anon));
    }

    #[test]
    fn without_rules_signed_in_users_may_everything_and_anonymous_nothing() {
        let acl = Acl::new(&[], &HashMap::new()).unwrap();
        assert!(acl.may(&user("x"), "any/repo", Action::Delete));
        assert!(!acl.may(&Identity::Anonymous, "any/repo", Action::Pull));
        assert!(!acl.may_pull_somewhere(&Identity::Anonymous));
    }

    #[test]
    fn bad_rules_stop_start_up_naming_the_rule() {
        let everyone = |r: AccessRule| AccessRule {
            authenticated: true,
            ..r
        };
        let cases = [
            (everyone(rule(&["a"], &["read"])), "unknown action"),
            (everyone(rule(&[""], &["pull"])), "empty"),
            (everyone(rule(&[], &["pull"])), "no repositories"),
            (everyone(rule(&["a/**b"], &["pull"])), "whole component"),
            (everyone(rule(&["a"], &[])), "no actions"),
            (rule(&["a"], &["pull"]), "names nobody"),
            (
                AccessRule {
                    groups: vec!["nope".into()],
                    ..rule(&["a"], &["pull"])
                },
                "unknown group",
            ),
        ];
        for (bad, reason) in cases {
            let fine = everyone(rule(&["ok"], &["pull"]));
            let error = Acl::new(&[fine, bad], &HashMap::new()).unwrap_err();
            assert_eq!(error.rule, 2);
            assert!(error.reason.contains(reason), "{}", error.reason);
        }
    }
}
