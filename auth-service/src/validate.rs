//! Validation of account fields: each check returns the description of what is wrong, and the
//! service collects them as field violations.

/// Most characters in an email address (RFC 5321 path limit less the angle brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most characters in the local part of an email address (RFC 5321).
pub const MAX_LOCAL_PART_CHARS: usize = 64;
/// Most characters in a display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// The stored form of an email: surrounding spaces trimmed, lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// What is wrong with a normalised email, if anything. The syntax is the WHATWG "valid email
/// address" (what browsers accept), with a dotted domain: `local@label.label…`.
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("is required");
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Some("must be at most 254 characters");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Some("must be an email address such as name@example.com");
    };
    const LOCAL_SPECIALS: &str = ".!#$%&'*+/=?^_`{|}~-";
    let local_ok = !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_CHARS
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        None
    } else {
        Some("must be an email address such as name@example.com")
    }
}

/// The display name to store: the given one trimmed, or the email's local part when empty.
pub fn display_name_or_default(display_name: &str, email: &str) -> String {
    let trimmed = display_name.trim();
    if trimmed.is_empty() {
        email.split('@').next().unwrap_or_default().to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// What is wrong with a (trimmed) display name, if anything.
pub fn display_name_problem(display_name: &str) -> Option<&'static str> {
    let chars = display_name.chars().count();
    if chars == 0 {
        Some("must not be empty")
    } else if chars > MAX_DISPLAY_NAME_CHARS {
        Some("must be at most 100 characters")
    } else if display_name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
    }

    #[test]
    fn valid_emails_pass() {
        for email in [
            "ada@example.com",
            "a.b+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "x@a-b.io",
        ] {
            assert_eq!(email_problem(email), None, "{email}");
        }
        let longest = format!("{}@{}.com", "a".repeat(64), "b".repeat(63))
            + &".cc".repeat((254 - 64 - 1 - 63 - 4) / 3);
        assert!(longest.len() <= 254);
        assert_eq!(email_problem(&longest), None);
    }

    #[test]
    fn invalid_emails_fail() {
        for email in [
            "",
            "plain",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@exa mple.com",
            "ada@-example.com",
            "ada@example..com",
            "ad a@example.com",
            "ada@@example.com",
            "ádá@example.com",
        ] {
            assert!(email_problem(email).is_some(), "{email:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(email_problem(&long).is_some());
        let local = format!("{}@example.com", "a".repeat(65));
        assert!(email_problem(&local).is_some());
    }

    #[test]
    fn display_names_default_to_the_local_part() {
        assert_eq!(display_name_or_default("", "ada@example.com"), "ada");
        assert_eq!(display_name_or_default("   ", "ada@example.com"), "ada");
        assert_eq!(
            display_name_or_default(" Ada L. ", "ada@example.com"),
            "Ada L."
        );
    }

    #[test]
    fn display_names_are_bounded() {
        assert_eq!(display_name_problem("Ada 🙂"), None);
        assert_eq!(display_name_problem(&"é".repeat(100)), None);
        assert!(display_name_problem(&"é".repeat(101)).is_some());
        assert!(display_name_problem("bad\u{7}name").is_some());
        assert!(display_name_problem("").is_some());
    }
}
