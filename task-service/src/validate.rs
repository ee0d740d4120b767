//! Task field rules. Lengths are counted in characters (Unicode scalar values), so that emoji
//! and accents count as one each and round-trip unchanged.

/// Most characters in a title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most characters in a description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// What is wrong with a title, if anything.
pub fn title_problem(title: &str) -> Option<&'static str> {
    if title.is_empty() {
        Some("is required")
    } else if title.trim().is_empty() {
        Some("must not be blank")
    } else if title.chars().count() > MAX_TITLE_CHARS {
        Some("must be at most 200 characters")
    } else if title.contains('\0') {
        Some("must not contain NUL characters")
    } else {
        None
    }
}

/// What is wrong with a description, if anything.
pub fn description_problem(description: &str) -> Option<&'static str> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        Some("must be at most 2000 characters")
    } else if description.contains('\0') {
        Some("must not contain NUL characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(title_problem("Buy groceries"), None);
        assert_eq!(
            title_problem(&"🙂".repeat(200)),
            None,
            "200 characters, 800 bytes"
        );
        assert!(title_problem(&"🙂".repeat(201)).is_some());
        assert!(title_problem("").is_some());
        assert!(title_problem(" \t\n ").is_some());
        assert!(title_problem("nul\0").is_some());
    }

    #[test]
    fn descriptions() {
        assert_eq!(description_problem(""), None);
        assert_eq!(description_problem(&"é".repeat(2000)), None);
        assert!(description_problem(&"é".repeat(2001)).is_some());
        assert!(description_problem("a\0b").is_some());
    }
}
