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

/// Property tests: any string at all (every Unicode scalar, blanks of every kind, NUL, lengths
/// around and far past the limits) gets the answer the documented rule gives.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Characters that probe the rules: any at all, blanks, NUL, and wide ones (more bytes than
    /// characters).
    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => any::<char>(),
            2 => prop::sample::select(vec![
                ' ', '\t', '\n', '\r', '\u{a0}', '\u{2003}', '\u{3000}',
            ]),
            1 => Just('\0'),
            3 => prop::sample::select(vec![
                'a', 'Z', 'é', '中', '🙂', '\u{301}', '\u{feff}', '\u{1}',
            ]),
        ]
    }

    /// Short strings of any characters, and strings around `limit` characters (random ends
    /// round a run of one character) or far past it.
    fn text_near(limit: usize) -> impl Strategy<Value = String> {
        let ends = || prop::collection::vec(tricky_char(), 0..8);
        prop_oneof![
            prop::collection::vec(tricky_char(), 0..24).prop_map(String::from_iter),
            (ends(), tricky_char(), limit - 12..limit + 4, ends()).prop_map(
                |(head, fill, run, tail)| {
                    let mut text = String::from_iter(head);
                    text.extend(std::iter::repeat_n(fill, run));
                    text.extend(tail);
                    text
                }
            ),
            (tricky_char(), 0..limit * 5).prop_map(|(fill, run)| fill.to_string().repeat(run)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_title_is_accepted_iff_1_to_200_characters_not_all_blank_without_nul(
            title in text_near(MAX_TITLE_CHARS),
        ) {
            let chars = title.chars().count();
            let blank = title.chars().all(char::is_whitespace);
            let valid = (1..=MAX_TITLE_CHARS).contains(&chars) && !blank && !title.contains('\0');
            let problem = title_problem(&title);
            prop_assert_eq!(problem.is_none(), valid, "{:?}", problem);
            if title.is_empty() {
                prop_assert_eq!(problem, Some("is required"));
            }
        }

        #[test]
        fn title_length_is_counted_in_characters_not_bytes(
            fill in tricky_char()
                .prop_filter("not blank, not NUL", |c| !c.is_whitespace() && *c != '\0'),
            run in 1..=2 * MAX_TITLE_CHARS,
        ) {
            let title = fill.to_string().repeat(run);
            prop_assert_eq!(title_problem(&title).is_none(), run <= MAX_TITLE_CHARS);
        }

        #[test]
        fn a_description_is_accepted_iff_at_most_2000_characters_without_nul(
            description in text_near(MAX_DESCRIPTION_CHARS),
        ) {
            let valid = description.chars().count() <= MAX_DESCRIPTION_CHARS
                && !description.contains('\0');
            prop_assert_eq!(description_problem(&description).is_none(), valid);
        }
    }
}
