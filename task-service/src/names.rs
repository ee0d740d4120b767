//! Resource names (AIP-122): `users/{user}` parents and `users/{user}/tasks/{task}` task names,
//! resolved against the caller. `users/me` is the caller. A name under anyone else is refused
//! before any lookup, so the answer never tells whether such a task exists.

/// Why a name cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Not of the expected form; the description says which.
    Malformed(&'static str),
    /// Another user's resource.
    OtherUser,
}

/// Resolves a user segment: `me` or the caller's own id.
fn own_user(user: &str, caller: &str) -> Result<(), NameError> {
    if user.is_empty() {
        return Err(NameError::Malformed(
            "must name a user: users/{user} or users/me",
        ));
    }
    if user == "me" || user == caller {
        Ok(())
    } else {
        Err(NameError::OtherUser)
    }
}

/// The owner named by `parent` (`users/{user}`), which must be the caller.
pub fn parse_parent(parent: &str, caller: &str) -> Result<(), NameError> {
    match parent.split('/').collect::<Vec<_>>().as_slice() {
        ["users", user] => own_user(user, caller),
        _ => Err(NameError::Malformed("must be users/{user} or users/me")),
    }
}

/// The task id named by `name` (`users/{user}/tasks/{task}`), whose user must be the caller.
pub fn parse_task_name(name: &str, caller: &str) -> Result<String, NameError> {
    const FORM: &str = "must be users/{user}/tasks/{task}";
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["users", user, "tasks", task] => {
            own_user(user, caller)?;
            let id = uuid::Uuid::try_parse(task)
                .map_err(|_| NameError::Malformed("must end in a task id (a UUID)"))?;
            Ok(id.hyphenated().to_string())
        }
        _ => Err(NameError::Malformed(FORM)),
    }
}

/// The name of `task_id` under `owner`.
pub fn task_name(owner: &str, task_id: &str) -> String {
    // Built directly: a listing makes one per task, and `format!` costs several times more.
    let mut name = String::with_capacity(13 + owner.len() + task_id.len());
    for part in ["users/", owner, "/tasks/", task_id] {
        name.push_str(part);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "0190f0e4-6b1c-7c3a-9d4e-0a1b2c3d4e5f";
    const TASK: &str = "0190f0e4-6b1c-7c3a-9d4e-aaaaaaaaaaaa";

    #[test]
    fn parents() {
        assert_eq!(parse_parent("users/me", ME), Ok(()));
        assert_eq!(parse_parent(&format!("users/{ME}"), ME), Ok(()));
        assert_eq!(
            parse_parent("users/someone-else", ME),
            Err(NameError::OtherUser)
        );
        for bad in [
            "",
            "users",
            "users/",
            "users/me/tasks",
            "groups/me",
            "/users/me",
        ] {
            assert!(
                matches!(parse_parent(bad, ME), Err(NameError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn task_names() {
        assert_eq!(
            parse_task_name(&format!("users/me/tasks/{TASK}"), ME),
            Ok(TASK.into())
        );
        assert_eq!(
            parse_task_name(&format!("users/{ME}/tasks/{TASK}"), ME),
            Ok(TASK.into())
        );
        // Upper case is the same id.
        let upper = TASK.to_uppercase();
        assert_eq!(
            parse_task_name(&format!("users/me/tasks/{upper}"), ME),
            Ok(TASK.into())
        );
        // Another user is refused before the id is even looked at.
        assert_eq!(
            parse_task_name("users/other/tasks/x", ME),
            Err(NameError::OtherUser)
        );
        for bad in [
            "users/me/tasks/",
            "users/me/tasks/not-a-uuid",
            "users/me",
            "tasks/x",
            "users/me/notes/x",
        ] {
            assert!(
                matches!(parse_task_name(bad, ME), Err(NameError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(task_name(ME, TASK), format!("users/{ME}/tasks/{TASK}"));
    }
}

/// Property tests: any string resolves as the grammar says without a panic, another user's name
/// is always `OtherUser` (whatever follows it), and the names we build parse back.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const ME: &str = "0190f0e4-6b1c-7c3a-9d4e-0a1b2c3d4e5f";

    /// A user segment that is neither `me` nor the caller (nor empty, nor holding a `/`).
    fn other_user() -> impl Strategy<Value = String> {
        prop_oneof![
            "[^/]{1,40}",
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            Just("ME".to_owned()),
            Just(ME.to_uppercase()),
            Just(format!(" {ME}")),
        ]
        .prop_filter("another user", |user| user != "me" && user != ME)
    }

    /// One path segment: the words of the grammar, the caller, other users, task ids, anything.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["users", "tasks", "me", ME, "", "Users"])
                .prop_map(str::to_owned),
            other_user(),
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            any::<String>(),
        ]
    }

    /// Names of every shape: two or four segments under `users` more often than chance would
    /// give, and any string at all.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            segment().prop_map(|user| format!("users/{user}")),
            (segment(), segment()).prop_map(|(user, task)| format!("users/{user}/tasks/{task}")),
            prop::collection::vec(segment(), 0..6).prop_map(|parts| parts.join("/")),
            any::<String>(),
        ]
    }

    /// Every spelling of a UUID that `Uuid::try_parse` takes.
    fn spellings(id: uuid::Uuid) -> [String; 5] {
        [
            id.hyphenated().to_string(),
            id.hyphenated().to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_parent_is_exactly_the_caller_another_user_or_malformed(name in name()) {
            let expected = match name.strip_prefix("users/") {
                Some(user) if !user.is_empty() && !user.contains('/') => {
                    if user == "me" || user == ME {
                        Ok(())
                    } else {
                        Err(NameError::OtherUser)
                    }
                }
                _ => Err(NameError::Malformed("")),
            };
            match (parse_parent(&name, ME), expected) {
                (Err(NameError::Malformed(_)), Err(NameError::Malformed(_))) => {}
                (got, expected) => prop_assert_eq!(got, expected, "{:?}", name),
            }
        }

        #[test]
        fn a_task_name_resolves_only_under_the_caller_to_a_canonical_id(name in name()) {
            let parts: Vec<&str> = name.split('/').collect();
            let result = parse_task_name(&name, ME);
            match parts.as_slice() {
                ["users", user, "tasks", task] if !user.is_empty() => {
                    if *user == "me" || *user == ME {
                        let expected = uuid::Uuid::try_parse(task).map(|id| id.to_string());
                        match expected {
                            Ok(id) => prop_assert_eq!(result, Ok(id)),
                            Err(_) => prop_assert!(matches!(result, Err(NameError::Malformed(_)))),
                        }
                    } else {
                        // Refused before the id is looked at: no answer tells what exists.
                        prop_assert_eq!(result, Err(NameError::OtherUser));
                    }
                }
                _ => prop_assert!(matches!(result, Err(NameError::Malformed(_))), "{:?}", result),
            }
        }

        #[test]
        fn another_users_names_are_permission_denied_whatever_follows(
            user in other_user(),
            task in any::<String>().prop_filter("one segment", |t| !t.contains('/')),
        ) {
            prop_assert_eq!(parse_parent(&format!("users/{user}"), ME), Err(NameError::OtherUser));
            prop_assert_eq!(
                parse_task_name(&format!("users/{user}/tasks/{task}"), ME),
                Err(NameError::OtherUser)
            );
        }

        #[test]
        fn own_task_names_round_trip_in_every_uuid_spelling(
            caller in any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            id in any::<u128>().prop_map(uuid::Uuid::from_u128),
        ) {
            let canonical = id.hyphenated().to_string();
            prop_assert_eq!(
                parse_task_name(&task_name(&caller, &canonical), &caller),
                Ok(canonical.clone())
            );
            prop_assert_eq!(parse_parent(&format!("users/{caller}"), &caller), Ok(()));
            for spelling in spellings(id) {
                for user in ["me", caller.as_str()] {
                    prop_assert_eq!(
                        parse_task_name(&format!("users/{user}/tasks/{spelling}"), &caller),
                        Ok(canonical.clone())
                    );
                }
            }
        }
    }
}
