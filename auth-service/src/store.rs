//! The users store: accounts, refresh-token families, signing keys and login failures.
//!
//! [`UserStore`] is what the service needs; [`SqlUserStore`] implements it on SQLite and on
//! PostgreSQL with the same SQL (see [`todo_common::on_pool`]). The contract tests at the
//! bottom run unchanged against both back-ends.

use std::future::Future;

use todo_common::{Database, on_pool, on_write_pool, time::Micros};

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// UUIDv7 string.
    pub id: String,
    /// Trimmed, lower-cased, unique.
    pub email: String,
    /// 1 to 100 characters.
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
}

/// One refresh token as stored: only the hash of the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The sign-in this token descends from.
    pub family_id: String,
    /// Whose session it is.
    pub user_id: String,
    /// When it was issued.
    pub create_time: Micros,
    /// When the family ends, whatever refreshes happen.
    pub expire_time: Micros,
}

/// The session a refresh token was exchanged for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was valid and is now spent; the new token continues its family.
    Rotated {
        /// Whose session it is.
        user_id: String,
    },
    /// The token had been spent already: its family is now revoked (likely theft).
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// A stored Ed25519 signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id, the `kid` of the tokens it signs.
    pub kid: String,
    /// The 32-byte seed, base64.
    pub private_key: String,
    /// The public key, base64url (JWK `x`).
    pub public_key: String,
    /// When it was made; the newest key signs.
    pub create_time: Micros,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("public_key", &self.public_key)
            .field("create_time", &self.create_time)
            .finish_non_exhaustive()
    }
}

/// Failed logins recorded for one email.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures in a row.
    pub failures: i64,
    /// When the last one happened.
    pub last_failure_time: Micros,
}

/// What went wrong in the store.
#[derive(Debug)]
pub enum StoreError {
    /// The email belongs to another account.
    EmailTaken,
    /// The database cannot be reached or is overloaded: retry later.
    Unavailable(sqlx::Error),
    /// Anything else: a bug or a broken database.
    Internal(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if todo_common::db::is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Internal(error)
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmailTaken => f.write_str("email taken"),
            Self::Unavailable(e) => write!(f, "database unavailable: {e}"),
            Self::Internal(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the auth service keeps.
pub trait UserStore: Send + Sync + 'static {
    /// Adds an account; [`StoreError::EmailTaken`] if the email is in use.
    fn create_user(&self, user: &UserRecord) -> impl Future<Output = StoreResult<()>> + Send;
    /// The account with this (normalised) email.
    fn user_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;
    /// The account with this id.
    fn user_by_id(&self, id: &str) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;
    /// Replaces the stored hash of the same password (new hashing costs); false if no account.
    fn update_password_hash(
        &self,
        id: &str,
        hash: &str,
        now: Micros,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Sets a new password and revokes every session of the account, atomically; false if no
    /// account.
    fn change_password(
        &self,
        id: &str,
        hash: &str,
        now: Micros,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores a new refresh token.
    fn insert_refresh_token(
        &self,
        token: &RefreshTokenRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Spends the token hashed `old_hash` and stores `new_hash` in its family, atomically.
    fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Micros,
    ) -> impl Future<Output = StoreResult<(Rotation, Option<RefreshTokenRecord>)>> + Send;
    /// Revokes the family of the token hashed `token_hash`, if any.
    fn revoke_family(
        &self,
        token_hash: &str,
        now: Micros,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every signing key, newest first.
    fn signing_keys(&self) -> impl Future<Output = StoreResult<Vec<SigningKeyRecord>>> + Send;
    /// Adds a signing key.
    fn insert_signing_key(
        &self,
        key: &SigningKeyRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The failed logins recorded for `email`.
    fn login_failures(
        &self,
        email: &str,
    ) -> impl Future<Output = StoreResult<Option<LoginFailures>>> + Send;
    /// Records a failed login; failures older than `forget_before` no longer count.
    fn record_login_failure(
        &self,
        email: &str,
        now: Micros,
        forget_before: Micros,
    ) -> impl Future<Output = StoreResult<LoginFailures>> + Send;
    /// Forgets the failed logins of `email` (after a successful login).
    fn clear_login_failures(&self, email: &str) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes expired refresh tokens and failure records older than `failures_before`;
    /// returns how many rows went.
    fn prune(
        &self,
        now: Micros,
        failures_before: Micros,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// [`UserStore`] on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlUserStore {
    db: Database,
}

impl SqlUserStore {
    /// A store over `db`, already migrated with [`crate::MIGRATIONS`].
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

type UserRow = (String, String, String, String, i64, i64);

fn user_from_row(
    (id, email, display_name, password_hash, create_time, update_time): UserRow,
) -> UserRecord {
    UserRecord {
        id,
        email,
        display_name,
        password_hash,
        create_time,
        update_time,
    }
}

const USER_COLUMNS: &str = "id, email, display_name, password_hash, create_time, update_time";

impl UserStore for SqlUserStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let result = on_write_pool!(&self.db, |pool, _begin| {
            sqlx::query(
                "INSERT INTO users (id, email, display_name, password_hash, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.display_name)
            .bind(&user.password_hash)
            .bind(user.create_time)
            .bind(user.update_time)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row: Option<UserRow> = on_pool!(&self.db, |pool, _begin| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(email)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(user_from_row))
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> = on_pool!(&self.db, |pool, _begin| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(user_from_row))
    }

    async fn update_password_hash(&self, id: &str, hash: &str, now: Micros) -> StoreResult<bool> {
        let result = on_write_pool!(&self.db, |pool, _begin| {
            sqlx::query("UPDATE users SET password_hash = $1, update_time = $2 WHERE id = $3")
                .bind(hash)
                .bind(now)
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(result == 1)
    }

    async fn change_password(&self, id: &str, hash: &str, now: Micros) -> StoreResult<bool> {
        let changed = on_write_pool!(&self.db, |pool, begin| {
            async {
                let mut tx = pool.begin_with(begin).await?;
                let changed = sqlx::query("UPDATE users SET password_hash = $1, update_time = $2 WHERE id = $3")
                    .bind(hash)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE refresh_tokens SET revoke_time = $1 WHERE user_id = $2 AND revoke_time IS NULL")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(changed)
            }
            .await
        })?;
        Ok(changed == 1)
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()> {
        on_write_pool!(&self.db, |pool, _begin| {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, create_time, expire_time) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.token_hash)
            .bind(&token.family_id)
            .bind(&token.user_id)
            .bind(token.create_time)
            .bind(token.expire_time)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Micros,
    ) -> StoreResult<(Rotation, Option<RefreshTokenRecord>)> {
        type TokenRow = (String, String, i64, Option<i64>, Option<i64>);
        let outcome = on_write_pool!(&self.db, |pool, begin| {
            async {
                let mut tx = pool.begin_with(begin).await?;
                let row: Option<TokenRow> = sqlx::query_as(
                    "SELECT family_id, user_id, expire_time, used_time, revoke_time \
                     FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((family_id, user_id, expire_time, used_time, revoke_time)) = row else {
                    return Ok((Rotation::Invalid, None));
                };
                if revoke_time.is_some() || expire_time <= now {
                    return Ok((Rotation::Invalid, None));
                }
                // Spend the token; zero rows means another call spent it first.
                let spent = sqlx::query(
                    "UPDATE refresh_tokens SET used_time = $1 WHERE token_hash = $2 AND used_time IS NULL",
                )
                .bind(now)
                .bind(old_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if used_time.is_some() || spent == 0 {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoke_time = $1 WHERE family_id = $2 AND revoke_time IS NULL",
                    )
                    .bind(now)
                    .bind(&family_id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok((Rotation::Reused, None));
                }
                let next = RefreshTokenRecord {
                    token_hash: new_hash.to_owned(),
                    family_id,
                    user_id: user_id.clone(),
                    create_time: now,
                    expire_time,
                };
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, family_id, user_id, create_time, expire_time) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&next.token_hash)
                .bind(&next.family_id)
                .bind(&next.user_id)
                .bind(next.create_time)
                .bind(next.expire_time)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>((Rotation::Rotated { user_id }, Some(next)))
            }
            .await
        })?;
        Ok(outcome)
    }

    async fn revoke_family(&self, token_hash: &str, now: Micros) -> StoreResult<()> {
        on_write_pool!(&self.db, |pool, _begin| {
            sqlx::query(
                "UPDATE refresh_tokens SET revoke_time = $1 WHERE revoke_time IS NULL AND family_id = \
                 (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
            )
            .bind(now)
            .bind(token_hash)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows: Vec<(String, String, String, i64)> = on_pool!(&self.db, |pool, _begin| {
            sqlx::query_as(
                "SELECT kid, private_key, public_key, create_time FROM signing_keys \
                 ORDER BY create_time DESC, kid DESC",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(kid, private_key, public_key, create_time)| SigningKeyRecord {
                    kid,
                    private_key,
                    public_key,
                    create_time,
                },
            )
            .collect())
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
        on_write_pool!(&self.db, |pool, _begin| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_key, public_key, create_time) VALUES ($1, $2, $3, $4)",
            )
            .bind(&key.kid)
            .bind(&key.private_key)
            .bind(&key.public_key)
            .bind(key.create_time)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn login_failures(&self, email: &str) -> StoreResult<Option<LoginFailures>> {
        let row: Option<(i64, i64)> = on_pool!(&self.db, |pool, _begin| {
            sqlx::query_as(
                "SELECT failures, last_failure_time FROM login_failures WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(|(failures, last_failure_time)| LoginFailures {
            failures,
            last_failure_time,
        }))
    }

    async fn record_login_failure(
        &self,
        email: &str,
        now: Micros,
        forget_before: Micros,
    ) -> StoreResult<LoginFailures> {
        let (failures, last_failure_time): (i64, i64) = on_write_pool!(
            &self.db,
            |pool, _begin| {
                sqlx::query_as(
                "INSERT INTO login_failures (email, failures, last_failure_time) VALUES ($1, 1, $2) \
                 ON CONFLICT (email) DO UPDATE SET \
                   failures = CASE WHEN login_failures.last_failure_time < $3 THEN 1 \
                                   ELSE login_failures.failures + 1 END, \
                   last_failure_time = $2 \
                 RETURNING failures, last_failure_time",
            )
            .bind(email)
            .bind(now)
            .bind(forget_before)
            .fetch_one(pool)
            .await
            }
        )?;
        Ok(LoginFailures {
            failures,
            last_failure_time,
        })
    }

    async fn clear_login_failures(&self, email: &str) -> StoreResult<()> {
        on_write_pool!(&self.db, |pool, _begin| {
            sqlx::query("DELETE FROM login_failures WHERE email = $1")
                .bind(email)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn prune(&self, now: Micros, failures_before: Micros) -> StoreResult<u64> {
        let removed = on_write_pool!(&self.db, |pool, _begin| {
            async {
                let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expire_time <= $1")
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected();
                let failures =
                    sqlx::query("DELETE FROM login_failures WHERE last_failure_time < $1")
                        .bind(failures_before)
                        .execute(pool)
                        .await?
                        .rows_affected();
                Ok::<_, sqlx::Error>(tokens + failures)
            }
            .await
        })?;
        Ok(removed)
    }
}

/// The contract every back-end must meet, run against SQLite and (with `TEST_POSTGRES_URL`)
/// PostgreSQL.
#[cfg(test)]
mod contract {
    use super::*;

    /// Runs `test` on a fresh store of every back-end.
    async fn on_every_backend<F, Fut>(test: F)
    where
        F: Fn(SqlUserStore) -> Fut,
        Fut: Future<Output = ()>,
    {
        todo_common::testing::on_every_backend(&crate::MIGRATIONS, |db| {
            test(SqlUserStore::new(db))
        })
        .await;
    }

    fn user(id: &str, email: &str) -> UserRecord {
        UserRecord {
            id: id.to_owned(),
            email: email.to_owned(),
            display_name: "Ada".to_owned(),
            password_hash: "$argon2id$hash".to_owned(),
            create_time: 1_000,
            update_time: 1_000,
        }
    }

    fn token(hash: &str, family: &str, user_id: &str, expire_time: Micros) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: hash.to_owned(),
            family_id: family.to_owned(),
            user_id: user_id.to_owned(),
            create_time: 1_000,
            expire_time,
        }
    }

    #[tokio::test]
    async fn users_are_found_by_email_and_id_with_every_field() {
        on_every_backend(|store| async move {
            let ada = UserRecord {
                display_name: "Ada 🙂 Lovelace".to_owned(),
                ..user("u1", "ada@example.com")
            };
            store.create_user(&ada).await.unwrap();
            assert_eq!(
                store.user_by_email("ada@example.com").await.unwrap(),
                Some(ada.clone())
            );
            assert_eq!(store.user_by_id("u1").await.unwrap(), Some(ada));
            assert_eq!(store.user_by_email("bob@example.com").await.unwrap(), None);
            assert_eq!(store.user_by_id("u2").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn an_email_belongs_to_one_account() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            let again = store.create_user(&user("u2", "ada@example.com")).await;
            assert!(matches!(again, Err(StoreError::EmailTaken)), "{again:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn password_changes_revoke_every_session_atomically() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("h1", "f1", "u1", i64::MAX))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("h2", "f2", "u1", i64::MAX))
                .await
                .unwrap();
            assert!(
                store
                    .update_password_hash("u1", "$rehash", 2_000)
                    .await
                    .unwrap()
            );
            assert_eq!(
                store.user_by_id("u1").await.unwrap().unwrap().password_hash,
                "$rehash"
            );

            assert!(store.change_password("u1", "$new", 3_000).await.unwrap());
            let changed = store.user_by_id("u1").await.unwrap().unwrap();
            assert_eq!(
                (changed.password_hash.as_str(), changed.update_time),
                ("$new", 3_000)
            );
            for old in ["h1", "h2"] {
                let (rotation, _) = store
                    .rotate_refresh_token(old, "next", 4_000)
                    .await
                    .unwrap();
                assert_eq!(rotation, Rotation::Invalid, "{old} was revoked");
            }
            assert!(!store.change_password("nobody", "$x", 3_000).await.unwrap());
        })
        .await;
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_within_their_family_and_keep_its_expiry() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("h1", "f1", "u1", 50_000))
                .await
                .unwrap();

            let (rotation, next) = store.rotate_refresh_token("h1", "h2", 2_000).await.unwrap();
            assert_eq!(
                rotation,
                Rotation::Rotated {
                    user_id: "u1".into()
                }
            );
            let next = next.unwrap();
            assert_eq!((next.family_id.as_str(), next.expire_time), ("f1", 50_000));

            let (rotation, _) = store.rotate_refresh_token("h2", "h3", 3_000).await.unwrap();
            assert!(matches!(rotation, Rotation::Rotated { .. }));
            // Past the family's end, nothing rotates.
            let (rotation, _) = store
                .rotate_refresh_token("h3", "h4", 50_000)
                .await
                .unwrap();
            assert_eq!(rotation, Rotation::Invalid);
            let (rotation, _) = store
                .rotate_refresh_token("unknown", "h5", 3_000)
                .await
                .unwrap();
            assert_eq!(rotation, Rotation::Invalid);
        })
        .await;
    }

    #[tokio::test]
    async fn a_reused_refresh_token_revokes_its_whole_family_only() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("a1", "fa", "u1", i64::MAX))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("b1", "fb", "u1", i64::MAX))
                .await
                .unwrap();
            store.rotate_refresh_token("a1", "a2", 2_000).await.unwrap();

            let (rotation, _) = store.rotate_refresh_token("a1", "a3", 3_000).await.unwrap();
            assert_eq!(rotation, Rotation::Reused);
            let (rotation, _) = store.rotate_refresh_token("a2", "a4", 4_000).await.unwrap();
            assert_eq!(
                rotation,
                Rotation::Invalid,
                "the thief's successor is revoked too"
            );
            let (rotation, _) = store.rotate_refresh_token("b1", "b2", 4_000).await.unwrap();
            assert!(
                matches!(rotation, Rotation::Rotated { .. }),
                "other sign-ins are untouched"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn logout_revokes_the_family_and_is_idempotent() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("h1", "f1", "u1", i64::MAX))
                .await
                .unwrap();
            store.rotate_refresh_token("h1", "h2", 2_000).await.unwrap();
            store.revoke_family("h1", 3_000).await.unwrap();
            store.revoke_family("h1", 3_000).await.unwrap();
            store.revoke_family("never-issued", 3_000).await.unwrap();
            let (rotation, _) = store.rotate_refresh_token("h2", "h3", 4_000).await.unwrap();
            assert_eq!(rotation, Rotation::Invalid);
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_rotations_of_one_token_let_exactly_one_through() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("h1", "f1", "u1", i64::MAX))
                .await
                .unwrap();
            let attempts = (0..8).map(|i| {
                let store = store.clone();
                async move {
                    store
                        .rotate_refresh_token("h1", &format!("n{i}"), 2_000)
                        .await
                        .unwrap()
                        .0
                }
            });
            let outcomes = futures_join_all(attempts).await;
            let rotated = outcomes
                .iter()
                .filter(|o| matches!(o, Rotation::Rotated { .. }))
                .count();
            assert_eq!(rotated, 1, "{outcomes:?}");
        })
        .await;
    }

    /// Runs the futures concurrently, each on its own task.
    async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut outputs = Vec::new();
        for handle in handles {
            outputs.push(handle.await.unwrap());
        }
        outputs
    }

    #[tokio::test]
    async fn signing_keys_come_newest_first() {
        on_every_backend(|store| async move {
            assert!(store.signing_keys().await.unwrap().is_empty());
            for (kid, time) in [("k1", 1_000), ("k3", 3_000), ("k2", 2_000)] {
                let key = SigningKeyRecord {
                    kid: kid.into(),
                    private_key: "seed".into(),
                    public_key: "x".into(),
                    create_time: time,
                };
                store.insert_signing_key(&key).await.unwrap();
            }
            let kids: Vec<String> = store
                .signing_keys()
                .await
                .unwrap()
                .into_iter()
                .map(|k| k.kid)
                .collect();
            assert_eq!(kids, ["k3", "k2", "k1"]);
        })
        .await;
    }

    #[tokio::test]
    async fn login_failures_count_up_reset_and_are_forgotten() {
        on_every_backend(|store| async move {
            let email = "ada@example.com";
            assert_eq!(store.login_failures(email).await.unwrap(), None);
            for n in 1..=3 {
                let failures = store
                    .record_login_failure(email, 1_000 * n, 0)
                    .await
                    .unwrap();
                assert_eq!(failures.failures, n);
            }
            assert_eq!(
                store.login_failures(email).await.unwrap(),
                Some(LoginFailures {
                    failures: 3,
                    last_failure_time: 3_000
                })
            );
            // The last failure is older than the window: counting starts again.
            let failures = store
                .record_login_failure(email, 10_000, 5_000)
                .await
                .unwrap();
            assert_eq!(failures.failures, 1);
            store.clear_login_failures(email).await.unwrap();
            assert_eq!(store.login_failures(email).await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn pruning_removes_only_expired_sessions_and_stale_failures() {
        on_every_backend(|store| async move {
            store
                .create_user(&user("u1", "ada@example.com"))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("old", "f1", "u1", 1_500))
                .await
                .unwrap();
            store
                .insert_refresh_token(&token("live", "f2", "u1", 9_000))
                .await
                .unwrap();
            store
                .record_login_failure("stale@example.com", 1_000, 0)
                .await
                .unwrap();
            store
                .record_login_failure("fresh@example.com", 5_000, 0)
                .await
                .unwrap();

            assert_eq!(store.prune(2_000, 2_000).await.unwrap(), 2);
            let (rotation, _) = store
                .rotate_refresh_token("live", "next", 2_000)
                .await
                .unwrap();
            assert!(matches!(rotation, Rotation::Rotated { .. }));
            assert!(
                store
                    .login_failures("fresh@example.com")
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                store
                    .login_failures("stale@example.com")
                    .await
                    .unwrap()
                    .is_none()
            );
        })
        .await;
    }
}
