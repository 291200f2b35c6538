//! Authorization: which principal may do what to which resource.
//!
//! An ACL entry allows one principal one [`Operation`] on a resource pattern: a topic or a
//! consumer group (by literal name or name prefix) or the cluster. Nothing is allowed that
//! no entry allows (default deny), except to superusers, who are allowed everything.
//! Implications, as in Kafka: `admin` on a resource allows every operation on it; `read`
//! or `write` allow `describe`. Cluster `admin` covers what belongs to the cluster (topic
//! creation and deletion, users, ACLs), not the data of every topic.

use std::collections::BTreeSet;
use std::fmt;

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Describe,
    Admin,
}

impl Operation {
    pub const ALL: [Operation; 4] = [Operation::Read, Operation::Write, Operation::Describe, Operation::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Describe => "describe",
            Operation::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether an entry granting `self` allows `asked`.
    fn implies(self, asked: Operation) -> bool {
        self == asked || self == Operation::Admin || (asked == Operation::Describe && self != Operation::Describe)
    }
}

/// The kind of a named resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Topic,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
        }
    }
}

/// The resources an entry covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// The one resource of that kind and name.
    Literal(Kind, String),
    /// Every resource of that kind whose name starts with this (never empty).
    Prefix(Kind, String),
    Cluster,
}

impl Pattern {
    fn covers(&self, target: &Target<'_>) -> bool {
        match (self, target) {
            (Pattern::Literal(k, name), Target::Named(t, n)) => k == t && name == n,
            (Pattern::Prefix(k, prefix), Target::Named(t, n)) => k == t && n.starts_with(prefix.as_str()),
            (Pattern::Cluster, Target::Cluster) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Literal(k, name) => write!(f, "{} {name}", k.name()),
            Pattern::Prefix(k, prefix) => write!(f, "{} prefix {prefix}", k.name()),
            Pattern::Cluster => f.write_str("cluster"),
        }
    }
}

/// What a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Named(Kind, &'a str),
    Cluster,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Named(k, name) => write!(f, "{} {name}", k.name()),
            Target::Cluster => f.write_str("cluster"),
        }
    }
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub principal: String,
    pub pattern: Pattern,
    pub operation: Operation,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {} {} {}", self.principal, self.operation.name(), self.pattern)
    }
}

/// A refusal: which permission was missing, for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not authorized: user {principal} lacks {} on {target}", operation.name())]
pub struct Denied {
    pub principal: String,
    pub operation: Operation,
    pub target: String,
}

/// Why an entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("an ACL needs a user name")]
    NoPrincipal,
    #[error("an ACL prefix or name must not be empty")]
    EmptyName,
}

/// Every entry, and the superusers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acls {
    entries: BTreeSet<Entry>,
}

impl Acls {
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Acls {
        Acls { entries: entries.into_iter().collect() }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Adds an entry; `false` if it was there already.
    pub fn add(&mut self, entry: Entry) -> Result<bool, EntryError> {
        check(&entry)?;
        Ok(self.entries.insert(entry))
    }

    /// Removes an entry; `false` if there was none.
    pub fn remove(&mut self, entry: &Entry) -> bool {
        self.entries.remove(entry)
    }

    /// Removes every entry of `principal` (the user is deleted).
    pub fn remove_principal(&mut self, principal: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.principal != principal);
        before - self.entries.len()
    }

    /// Whether `principal` (a superuser when `superuser`) may do `operation` to `target`.
    pub fn check(
        &self,
        principal: &str,
        superuser: bool,
        operation: Operation,
        target: Target<'_>,
    ) -> Result<(), Denied> {
        let allowed = superuser
            || self
                .entries
                .iter()
                .any(|e| e.principal == principal && e.operation.implies(operation) && e.pattern.covers(&target));
        if allowed {
            return Ok(());
        }
        Err(Denied { principal: principal.to_string(), operation, target: target.to_string() })
    }
}

fn check(entry: &Entry) -> Result<(), EntryError> {
    if entry.principal.is_empty() {
        return Err(EntryError::NoPrincipal);
    }
    match &entry.pattern {
        Pattern::Literal(_, n) | Pattern::Prefix(_, n) if n.is_empty() => Err(EntryError::EmptyName),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(principal: &str, pattern: Pattern, operation: Operation) -> Entry {
        Entry { principal: principal.into(), pattern, operation }
    }

    fn topic(name: &str) -> Target<'_> {
        Target::Named(Kind::Topic, name)
    }

    #[test]
    fn default_deny_literals_prefixes_and_implications() {
        let mut acls = Acls::default();
        acls.add(entry("reader", Pattern::Literal(Kind::Topic, "orders".into()), Operation::Read)).unwrap();
        acls.add(entry("writer", Pattern::Prefix(Kind::Topic, "logs-".into()), Operation::Write)).unwrap();
        acls.add(entry("ops", Pattern::Cluster, Operation::Admin)).unwrap();
        acls.add(entry("owner", Pattern::Literal(Kind::Topic, "t".into()), Operation::Admin)).unwrap();
        let ok = |p: &str, op, t| acls.check(p, false, op, t).is_ok();
        assert!(ok("reader", Operation::Read, topic("orders")));
        assert!(ok("reader", Operation::Describe, topic("orders")), "read implies describe");
        assert!(!ok("reader", Operation::Write, topic("orders")));
        assert!(!ok("reader", Operation::Read, topic("orders2")), "a literal is not a prefix");
        assert!(!ok("reader", Operation::Read, Target::Named(Kind::Group, "orders")), "kinds are apart");
        assert!(ok("writer", Operation::Write, topic("logs-a")));
        assert!(!ok("writer", Operation::Write, topic("log")));
        assert!(!ok("writer", Operation::Read, topic("logs-a")));
        assert!(ok("ops", Operation::Admin, Target::Cluster));
        assert!(!ok("ops", Operation::Read, topic("orders")), "cluster admin is not every topic's data");
        for op in Operation::ALL {
            assert!(ok("owner", op, topic("t")), "admin implies {op:?}");
            assert!(acls.check("root", true, op, topic("anything")).is_ok(), "superuser");
        }
        let denied = acls.check("reader", false, Operation::Write, topic("orders")).unwrap_err();
        assert_eq!(denied.to_string(), "not authorized: user reader lacks write on topic orders");
        assert!(!ok("nobody", Operation::Describe, Target::Cluster));
        assert_eq!(acls.remove_principal("reader"), 1);
        assert!(acls.check("reader", false, Operation::Read, topic("orders")).is_err());
    }

    #[test]
    fn empty_names_are_refused() {
        let mut acls = Acls::default();
        assert_eq!(
            acls.add(entry("a", Pattern::Prefix(Kind::Topic, String::new()), Operation::Read)),
            Err(EntryError::EmptyName)
        );
        assert_eq!(acls.add(entry("", Pattern::Cluster, Operation::Admin)), Err(EntryError::NoPrincipal));
    }

    fn arb_op() -> impl Strategy<Value = Operation> {
        prop::sample::select(Operation::ALL.to_vec())
    }

    proptest! {
        /// Against a model: allowed iff some entry of the principal names the topic (or a
        /// prefix of it) with an operation implying the one asked.
        #[test]
        fn topic_checks_agree_with_a_model(
            grants in proptest::collection::vec(("[ab]", "[xy]{1,3}", any::<bool>(), arb_op()), 0..8),
            asked in ("[ab]", "[xy]{1,4}", arb_op()),
        ) {
            let entries = grants.iter().map(|(p, n, prefix, op)| {
                let pattern = if *prefix { Pattern::Prefix(Kind::Topic, n.clone()) } else { Pattern::Literal(Kind::Topic, n.clone()) };
                entry(p, pattern, *op)
            });
            let acls = Acls::new(entries);
            let (p, name, op) = asked;
            let model = grants.iter().any(|(gp, gn, prefix, gop)| {
                let named = if *prefix { name.starts_with(gn.as_str()) } else { name == *gn };
                let implied = *gop == op || *gop == Operation::Admin || (op == Operation::Describe && *gop != Operation::Describe);
                *gp == p && named && implied
            });
            prop_assert_eq!(acls.check(&p, false, op, topic(&name)).is_ok(), model);
        }
    }
}
