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
