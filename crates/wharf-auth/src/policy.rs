//! Repository access policy: rules mapping repository globs to actions for
//! users, groups, robots, `anonymous` and `authenticated`. Default: deny.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::AuthError;

/// Something a request may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The action as token scopes spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// Parses a scope action; `*` is not accepted here (see [`Action::ALL`]).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    /// Every action.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// No credentials.
    Anonymous,
    /// A user from the htpasswd file.
    User(String),
    /// A robot account (its own fixed scopes apply on top of the policy).
    Robot(String),
}

impl Subject {
    /// The name used in tokens (`sub`) and logs.
    pub fn name(&self) -> String {
        match self {
            Subject::Anonymous => String::new(),
            Subject::User(u) => u.clone(),
            Subject::Robot(r) => format!("{}{r}", crate::robots::ROBOT_PREFIX),
        }
    }
}

/// One rule as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Repository globs: `*` matches within one path component, `**`
    /// matches one or more components (`team-a/**`, `public/*`, `**`).
    pub repositories: Vec<String>,
    /// Who: `anonymous`, `authenticated`, `user:NAME`, `group:NAME`,
    /// `robot:NAME`.
    pub subjects: Vec<String>,
    /// What: `pull`, `push`, `delete`.
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anonymous,
    Authenticated,
    User(String),
    Group(String),
    Robot(String),
}

#[derive(Debug, Clone)]
struct Rule {
    globs: Vec<Glob>,
    who: Vec<Who>,
    actions: BTreeSet<Action>,
}

/// A validated policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    groups: BTreeMap<String, BTreeSet<String>>,
}

impl Policy {
    /// Builds a policy from configuration. `known_user` says whether a user
    /// exists (so a typo in a rule is an error, not a silent lock-out).
    pub fn new(
        rules: &[RuleConfig],
        groups: &BTreeMap<String, Vec<String>>,
        known_user: impl Fn(&str) -> bool,
    ) -> Result<Self, AuthError> {
        let err = |m: String| Err(AuthError::Config(m));
        let mut out = Policy {
            rules: Vec::new(),
            groups: BTreeMap::new(),
        };
        for (g, members) in groups {
            for m in members {
                if !known_user(m) {
                    return err(format!("group {g:?} lists unknown user {m:?}"));
                }
            }
            out.groups
                .insert(g.clone(), members.iter().cloned().collect());
        }
        for (i, r) in rules.iter().enumerate() {
            let at = format!("auth rule {}", i + 1);
            if r.repositories.is_empty() || r.subjects.is_empty() || r.actions.is_empty() {
                return err(format!(
                    "{at}: repositories, subjects and actions must each list at least one entry"
                ));
            }
            let globs = r
                .repositories
                .iter()
                .map(|g| Glob::parse(g).map_err(|m| AuthError::Config(format!("{at}: {m}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let mut who = Vec::new();
            for s in &r.subjects {
                let w = match s.split_once(':') {
                    None if s == "anonymous" => Who::Anonymous,
                    None if s == "authenticated" => Who::Authenticated,
                    Some(("user", u)) if known_user(u) => Who::User(u.to_owned()),
                    Some(("user", u)) => return err(format!("{at}: unknown user {u:?}")),
                    Some(("group", g)) if out.groups.contains_key(g) => Who::Group(g.to_owned()),
                    Some(("group", g)) => return err(format!("{at}: unknown group {g:?}")),
                    Some(("robot", r)) if !r.is_empty() => Who::Robot(r.to_owned()),
                    _ => {
                        return err(format!(
                            "{at}: subject {s:?} is not anonymous, authenticated, user:NAME, group:NAME or robot:NAME"
                        ));
                    }
                };
                who.push(w);
            }
            if who.contains(&Who::Anonymous) && r.actions.iter().any(|a| *a != Action::Pull) {
                return err(format!("{at}: anonymous may only be granted pull"));
            }
            out.rules.push(Rule {
                globs,
                who,
                actions: r.actions.iter().copied().collect(),
            });
        }
        if out.rules.is_empty() {
            return err("auth is on but no rules grant anything: everyone would be locked out (add [[auth.rules]])".into());
        }
        if !out
            .rules
            .iter()
            .any(|r| r.actions.contains(&Action::Push) && r.who != [Who::Anonymous])
        {
            return err("no rule grants push to anyone: nothing could ever be pushed".into());
        }
        Ok(out)
    }

    fn applies(&self, who: &Who, subject: &Subject) -> bool {
        match (who, subject) {
            (Who::Anonymous, _) => true,
            (Who::Authenticated, Subject::User(_) | Subject::Robot(_)) => true,
            (Who::User(u), Subject::User(s)) => u == s,
            (Who::Group(g), Subject::User(s)) => self.groups.get(g).is_some_and(|m| m.contains(s)),
            (Who::Robot(r), Subject::Robot(s)) => r == s,
            _ => false,
        }
    }

    /// The actions `subject` may do on `repository`.
    pub fn allowed(&self, subject: &Subject, repository: &str) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            if rule.who.iter().any(|w| self.applies(w, subject))
                && rule.globs.iter().any(|g| g.matches(repository))
            {
                out.extend(rule.actions.iter().copied());
            }
        }
        out
    }

    /// Whether `subject` may do `action` on `repository`.
    pub fn permits(&self, subject: &Subject, repository: &str, action: Action) -> bool {
        self.allowed(subject, repository).contains(&action)
    }

    /// Whether anonymous requests can ever pull something (then a 401 for
    /// an anonymous request is a challenge, never a plain refusal).
    pub fn grants_anonymous(&self) -> bool {
        self.rules.iter().any(|r| r.who.contains(&Who::Anonymous))
    }
}

/// A repository glob: `*` within a component, `**` for one or more
/// components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<String>,
}

impl Glob {
    /// Parses a glob.
    ///
    /// ```
    /// use wharf_auth::policy::Glob;
    /// let g = Glob::parse("team-a/**").unwrap();
    /// assert!(g.matches("team-a/app") && g.matches("team-a/x/y"));
    /// assert!(!g.matches("team-a") && !g.matches("team-b/app"));
    /// let g = Glob::parse("public/*").unwrap();
    /// assert!(g.matches("public/nginx") && !g.matches("public/a/b"));
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.starts_with('/') || s.ends_with('/') || s.contains("//") {
            return Err(format!(
                "repository glob {s:?} is empty or has empty components"
            ));
        }
        let parts: Vec<String> = s.split('/').map(str::to_owned).collect();
        for p in &parts {
            if p.contains("**") && p != "**" {
                return Err(format!(
                    "repository glob {s:?}: ** must be a whole component"
                ));
            }
            if !p
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-*".contains(&b))
            {
                return Err(format!(
                    "repository glob {s:?} has characters repository names cannot have"
                ));
            }
        }
        Ok(Glob { parts })
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let comps: Vec<&str> = name.split('/').collect();
        match_parts(&self.parts, &comps)
    }
}

fn match_parts(glob: &[String], name: &[&str]) -> bool {
    match glob.split_first() {
        None => name.is_empty(),
        Some((g, rest)) if g == "**" => {
            // One or more components; bounded by name length, so linear-ish.
            (1..=name.len()).any(|k| match_parts(rest, &name[k..]))
        }
        Some((g, rest)) => match name.split_first() {
            Some((n, nrest)) => {
                match_component(g.as_bytes(), n.as_bytes()) && match_parts(rest, nrest)
            }
            None => false,
        },
    }
}

/// `*` matches any run of characters within a component (iterative, no
/// exponential backtracking).
fn match_component(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repos: &[&str], subjects: &[&str], actions: &[Action]) -> RuleConfig {
        RuleConfig {
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            actions: actions.to_vec(),
        }
    }

    fn users(u: &str) -> bool {
        ["alice", "bob", "carol"].contains(&u)
    }

    #[test]
    fn globs() {
        for (g, yes, no) in [
            ("**", vec!["a", "a/b/c"], vec![]),
            ("a/**", vec!["a/b", "a/b/c"], vec!["a", "ab/c"]),
            ("a/*", vec!["a/b"], vec!["a/b/c", "a"]),
            ("*-prod/**", vec!["x-prod/y"], vec!["x-dev/y"]),
            ("a/**/z", vec!["a/b/z", "a/b/c/z"], vec!["a/z", "a/b/y"]),
            ("lib*", vec!["library", "lib"], vec!["xlib"]),
        ] {
            let glob = Glob::parse(g).unwrap();
            for y in yes {
                assert!(glob.matches(y), "{g} ~ {y}");
            }
            for n in no {
                assert!(!glob.matches(n), "{g} !~ {n}");
            }
        }
        for bad in ["", "/a", "a/", "a//b", "a**", "A/*", "a b"] {
            assert!(Glob::parse(bad).is_err(), "{bad}");
        }
        let evil = Glob::parse(&"*a".repeat(30)).unwrap();
        assert!(!evil.matches(&"a".repeat(200).replace("aa", "ab")));
    }

    #[test]
    fn rules_grant_and_default_deny() {
        let mut groups = BTreeMap::new();
        groups.insert("devs".to_string(), vec!["bob".to_string()]);
        let p = Policy::new(
            &[
                rule(&["public/**"], &["anonymous"], &[Action::Pull]),
                rule(
                    &["team-a/**"],
                    &["group:devs", "user:alice"],
                    &[Action::Pull, Action::Push],
                ),
                rule(
                    &["**"],
                    &["user:carol"],
                    &[Action::Pull, Action::Push, Action::Delete],
                ),
                rule(&["ci/*"], &["robot:builder"], &[Action::Push]),
                rule(&["shared"], &["authenticated"], &[Action::Pull]),
            ],
            &groups,
            users,
        )
        .unwrap();
        let alice = Subject::User("alice".into());
        let bob = Subject::User("bob".into());
        let robot = Subject::Robot("builder".into());
        assert!(p.permits(&Subject::Anonymous, "public/x", Action::Pull));
        assert!(!p.permits(&Subject::Anonymous, "public/x", Action::Push));
        assert!(!p.permits(&Subject::Anonymous, "team-a/x", Action::Pull));
        assert!(p.permits(&bob, "team-a/x", Action::Push));
        assert!(!p.permits(&bob, "team-a/x", Action::Delete));
        assert!(
            p.permits(&alice, "public/x", Action::Pull),
            "anonymous grants apply to everyone"
        );
        assert!(p.permits(&alice, "shared", Action::Pull));
        assert!(!p.permits(&Subject::Anonymous, "shared", Action::Pull));
        assert!(p.permits(&robot, "ci/app", Action::Push));
        assert!(p.permits(&robot, "shared", Action::Pull));
        assert!(!p.permits(&robot, "team-a/x", Action::Pull));
        assert!(p.permits(&Subject::User("carol".into()), "any/thing", Action::Delete));
        assert!(p.grants_anonymous());
    }

    #[test]
    fn useless_or_wrong_rule_sets_are_errors() {
        let groups = BTreeMap::new();
        let cases = [
            (vec![], "locked out"),
            (
                vec![rule(&["**"], &["anonymous"], &[Action::Pull])],
                "grants push",
            ),
            (
                vec![rule(&["**"], &["user:mallory"], &[Action::Push])],
                "unknown user",
            ),
            (
                vec![rule(&["**"], &["group:none"], &[Action::Push])],
                "unknown group",
            ),
            (
                vec![rule(&["**"], &["everyone"], &[Action::Push])],
                "not anonymous",
            ),
            (
                vec![rule(&["**"], &["anonymous"], &[Action::Push])],
                "only be granted pull",
            ),
            (
                vec![rule(&["a//b"], &["user:alice"], &[Action::Push])],
                "empty components",
            ),
            (
                vec![rule(&[], &["user:alice"], &[Action::Push])],
                "at least one",
            ),
        ];
        for (rules, needle) in cases {
            let e = Policy::new(&rules, &groups, users).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let mut bad_group = BTreeMap::new();
        bad_group.insert("g".to_string(), vec!["nobody".to_string()]);
        assert!(
            Policy::new(
                &[rule(&["**"], &["user:alice"], &[Action::Push])],
                &bad_group,
                users
            )
            .is_err()
        );
    }
}
