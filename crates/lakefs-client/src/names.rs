//! lakeFS's naming rules, written once for the client, the pipeline's configuration checks and
//! lakefs-local: repositories `^[a-z0-9][a-z0-9-]{2,62}$`, branches and tags `^\w[-\w]*$`.

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A repository.
    Repository,
    /// A branch.
    Branch,
    /// A tag.
    Tag,
}

impl NameKind {
    /// The word for messages: "repository", "branch", "tag".
    pub fn word(self) -> &'static str {
        match self {
            Self::Repository => "repository",
            Self::Branch => "branch",
            Self::Tag => "tag",
        }
    }

    /// The rule in words, for messages that say what to use instead.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Repository => {
                "3 to 63 lower-case letters, digits and '-', starting with a letter or digit"
            }
            Self::Branch | Self::Tag => {
                "letters, digits, '_' and '-', starting with a letter, digit or '_'"
            }
        }
    }

    /// Whether lakeFS accepts `name` as a name of this kind.
    pub fn accepts(self, name: &str) -> bool {
        match self {
            Self::Repository => {
                (3..=63).contains(&name.len())
                    && !name.starts_with('-')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }
            Self::Branch | Self::Tag => {
                !name.starts_with('-')
                    && !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NameKind::*;

    #[test]
    fn names_follow_lakefs() {
        assert!(Repository.accepts("seg-data"));
        assert!(Repository.accepts("abc"));
        assert!(!Repository.accepts("ab"), "lakeFS needs 3 characters");
        assert!(!Repository.accepts("-abc"));
        assert!(!Repository.accepts("Seg"));
        assert!(!Repository.accepts(&"a".repeat(64)));
        assert!(Branch.accepts("main"));
        assert!(Branch.accepts("_x-1"));
        assert!(!Branch.accepts("-x"));
        assert!(!Branch.accepts("a/b"));
        assert!(!Branch.accepts(""));
        assert!(Tag.accepts("v1"));
        assert!(!Tag.accepts("v 1"));
    }
}
