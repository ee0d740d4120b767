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

/// Property tests: any string at all gets the documented answer without a panic, normalising is
/// idempotent, and every address of the documented syntax is accepted up to 254 characters.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Any character, with blanks, controls, the email punctuation and case-changing letters
    /// (`İ` lower-cases to two characters, `Σ` by context) more often than chance gives.
    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => any::<char>(),
            2 => prop::sample::select(vec![
                ' ', '\t', '\n', '\u{a0}', '\u{3000}', '\0', '\u{7}', '\u{85}',
            ]),
            3 => prop::sample::select(vec![
                '@', '.', '-', '+', 'A', 'z', '9', 'İ', 'Σ', 'ß', 'K', '🙂',
            ]),
        ]
    }

    /// Short strings of any characters, and runs around `limit` characters.
    fn text_near(limit: usize) -> impl Strategy<Value = String> {
        let ends = || prop::collection::vec(tricky_char(), 0..6);
        prop_oneof![
            prop::collection::vec(tricky_char(), 0..40).prop_map(String::from_iter),
            (ends(), tricky_char(), limit - 8..limit + 4, ends()).prop_map(
                |(head, fill, run, tail)| {
                    let mut text = String::from_iter(head);
                    text.extend(std::iter::repeat_n(fill, run));
                    text.extend(tail);
                    text
                }
            ),
        ]
    }

    /// An address of the documented syntax (lower case), of any length up to about 450.
    fn address() -> impl Strategy<Value = String> {
        let local = "[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}";
        let label = prop_oneof!["[a-z0-9]", "[a-z0-9][a-z0-9-]{0,61}[a-z0-9]",];
        (local, prop::collection::vec(label, 2..7))
            .prop_map(|(local, labels)| format!("{local}@{}", labels.join(".")))
    }

    /// `text` with the ASCII letters picked by `upper` in upper case.
    fn recase(text: &str, upper: &[bool]) -> String {
        text.chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    fn blanks() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![' ', '\t', '\n', '\u{3000}']),
            0..3,
        )
        .prop_map(String::from_iter)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn normalising_is_idempotent_trimmed_and_lower_case(email in text_near(MAX_EMAIL_CHARS)) {
            let normal = normalize_email(&email);
            prop_assert_eq!(normalize_email(&normal), normal.clone());
            prop_assert_eq!(normal.trim(), normal.as_str());
            prop_assert_eq!(normal.to_lowercase(), normal);
        }

        #[test]
        fn every_address_of_the_syntax_is_accepted_up_to_254_characters(
            email in address(),
        ) {
            let problem = email_problem(&email);
            prop_assert_eq!(
                problem.is_none(),
                email.len() <= MAX_EMAIL_CHARS,
                "{:?} ({} characters)",
                problem,
                email.len()
            );
        }

        #[test]
        fn an_address_is_one_account_in_any_case_and_with_any_surrounding_blanks(
            email in address().prop_filter("short enough", |e| e.len() <= MAX_EMAIL_CHARS),
            upper in prop::collection::vec(any::<bool>(), 1..16),
            lead in blanks(),
            trail in blanks(),
        ) {
            let typed = format!("{lead}{}{trail}", recase(&email, &upper));
            let normal = normalize_email(&typed);
            prop_assert_eq!(&normal, &email);
            prop_assert_eq!(email_problem(&normal), None);
        }

        #[test]
        fn accepted_emails_are_ascii_with_one_at_and_at_most_254_characters(
            email in prop_oneof![
                text_near(MAX_EMAIL_CHARS).prop_map(|e| normalize_email(&e)),
                address(),
            ],
        ) {
            if email_problem(&email).is_none() {
                prop_assert!(email.is_ascii(), "{:?}", email);
                prop_assert!(email.len() <= MAX_EMAIL_CHARS);
                prop_assert_eq!(email.matches('@').count(), 1);
                let (local, domain) = email.split_once('@').unwrap();
                prop_assert!(!local.is_empty() && local.len() <= MAX_LOCAL_PART_CHARS);
                prop_assert!(domain.contains('.'));
            }
            if email.is_empty() {
                prop_assert_eq!(email_problem(&email), Some("is required"));
            }
        }

        #[test]
        fn a_display_name_is_accepted_iff_1_to_100_characters_without_controls(
            name in text_near(MAX_DISPLAY_NAME_CHARS),
        ) {
            let chars = name.chars().count();
            let valid = (1..=MAX_DISPLAY_NAME_CHARS).contains(&chars)
                && !name.chars().any(char::is_control);
            prop_assert_eq!(display_name_problem(&name).is_none(), valid);
        }

        #[test]
        fn the_stored_display_name_is_the_trimmed_one_or_a_valid_default(
            given in prop_oneof![text_near(MAX_DISPLAY_NAME_CHARS), blanks()],
            email in address().prop_filter("valid", |e| email_problem(e).is_none()),
        ) {
            let stored = display_name_or_default(&given, &email);
            prop_assert_eq!(stored.trim(), stored.as_str());
            if given.trim().is_empty() {
                // The default is the local part, which always makes a valid display name.
                prop_assert_eq!(Some(stored.as_str()), email.split('@').next());
                prop_assert_eq!(display_name_problem(&stored), None);
            } else {
                prop_assert_eq!(stored.as_str(), given.trim());
            }
            prop_assert_eq!(display_name_or_default(&stored, &email), stored.clone(), "idempotent");
        }
    }
}
