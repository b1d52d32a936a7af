//! Topic names and topic filters (spec §4.7).
//!
//! A topic *name* is what a PUBLISH (or a will) is sent to: no wildcards.
//! A topic *filter* is what a SUBSCRIBE matches with: `+` stands for exactly
//! one level and must fill it, `#` for any number of trailing levels and
//! must be the last character, alone or after a `/`. Both are non-empty
//! UTF-8 (checked by the string reader before these rules). [`matches`]
//! is the reference meaning of a filter, for tests and for the gateway's
//! topic index to agree with.

/// Why a string is not a valid topic name or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Topics are at least one character long (§4.7.3).
    #[error("empty topic")]
    Empty,
    /// A topic name contains `+` or `#` (§3.3.2.1).
    #[error("wildcard in a topic name")]
    WildcardInName,
    /// `#` is not the last character, or follows something other than `/`
    /// (§4.7.1.2).
    #[error("'#' must be last and fill its level")]
    BadMultiLevelWildcard,
    /// `+` shares its level with other characters (§4.7.1.3).
    #[error("'+' must fill its level")]
    BadSingleLevelWildcard,
}

/// Checks a topic name: non-empty, no wildcard.
pub fn check_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter: non-empty; `#` only as the whole last level;
/// `+` only as a whole level.
pub fn check_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(TopicError::BadMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadSingleLevelWildcard);
        }
    }
    Ok(())
}

/// Whether the valid filter `filter` matches the valid topic name `name`
/// (§4.7): `+` matches one level (an empty one too), `#` the parent level
/// and any below it. Filters starting with a wildcard do not match names
/// starting with `$` (§4.7.2).
#[must_use]
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match names.next() {
            Some(n) if level == "+" || level == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_wildcards_and_emptiness() {
        for ok in ["a", "a/b", "/", "a//b", "$SYS/x", " "] {
            assert_eq!(check_topic_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_topic_name(""), Err(TopicError::Empty));
        for bad in ["a/+", "#", "a/#", "a+b", "x#"] {
            assert_eq!(
                check_topic_name(bad),
                Err(TopicError::WildcardInName),
                "{bad}"
            );
        }
    }

    #[test]
    fn filters_place_wildcards_per_spec() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "+/",
            "a/+/#",
            "sport/tennis/#",
            "/#",
        ] {
            assert_eq!(check_topic_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_topic_filter(""), Err(TopicError::Empty));
        for bad in ["a#", "a/#/b", "#/", "a/b#", "##"] {
            assert_eq!(
                check_topic_filter(bad),
                Err(TopicError::BadMultiLevelWildcard),
                "{bad}"
            );
        }
        for bad in ["a+", "+a", "a/b+/c", "++"] {
            assert_eq!(
                check_topic_filter(bad),
                Err(TopicError::BadSingleLevelWildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // §4.7.1.2 and §4.7.1.3.
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        // §4.7.2: `$` topics are not matched by a leading wildcard.
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }
}
