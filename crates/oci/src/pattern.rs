//! Repository name patterns, as access rules, retention policies and notification filters
//! write them: `*` matches any run of characters within one path component, `**` any number
//! of whole components, none included (`team/**` matches `team` too).

/// A repository pattern, a component at a time.
#[derive(Debug, Clone)]
pub struct RepoPattern(Vec<Component>);

#[derive(Debug, Clone)]
enum Component {
    /// `**`: any number of components, none included.
    Any,
    /// A component, where `*` matches any run of characters.
    Glob(String),
}

impl RepoPattern {
    /// Reads a pattern.
    ///
    /// # Errors
    /// What is wrong with it: empty, an empty component, or `**` inside a component.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a repository pattern is empty".into());
        }
        text.split('/')
            .map(|part| match part {
                "" => Err(format!("pattern {text:?} has an empty component")),
                "**" => Ok(Component::Any),
                p if p.contains("**") => {
                    Err(format!("pattern {text:?}: ** must be a whole component"))
                }
                p => Ok(Component::Glob(p.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `repository` matches.
    #[must_use]
    pub fn matches(&self, repository: &str) -> bool {
        let components: Vec<&str> = repository.split('/').collect();
        matches_from(&self.0, &components)
    }
}

fn matches_from(pattern: &[Component], components: &[&str]) -> bool {
    match pattern.split_first() {
        None => components.is_empty(),
        Some((Component::Any, rest)) => {
            (0..=components.len()).any(|skip| matches_from(rest, &components[skip..]))
        }
        Some((Component::Glob(glob), rest)) => components
            .split_first()
            .is_some_and(|(first, others)| glob_matches(glob, first) && matches_from(rest, others)),
    }
}

/// Whether `text` matches `glob`, where `*` matches any run of characters (tags, components).
#[must_use]
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_a_component() {
        assert!(glob_matches("team-*", "team-a"));
        assert!(glob_matches("*-cache", "docker-cache"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "aXbY"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("abc", "abcd"));
    }

    #[test]
    fn double_stars_match_any_number_of_components() {
        let p = RepoPattern::parse("team/**").unwrap();
        assert!(p.matches("team") && p.matches("team/a") && p.matches("team/a/b"));
        assert!(!p.matches("teams/a"));
        let q = RepoPattern::parse("base/*").unwrap();
        assert!(q.matches("base/x") && !q.matches("base/x/y") && !q.matches("base"));
        assert!(RepoPattern::parse("a/**b").is_err() && RepoPattern::parse("").is_err());
    }
}
