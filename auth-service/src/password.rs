//! Passwords: the rules a new password must meet, and Argon2id hashing on a bounded pool of
//! blocking threads.
//!
//! Hashing is deliberately expensive (19 MiB and two passes at the OWASP minimum), so it never
//! runs on the async workers: at most `concurrency` hashes run at once on tokio's blocking pool,
//! a bounded number wait for a turn, and calls beyond that are refused as busy. A login flood
//! therefore costs bounded memory and CPU and cannot starve the other RPCs.

use std::{
    collections::HashSet,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use tokio::sync::Semaphore;

/// Fewest characters in a password (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most characters in a password; longer ones are refused, never truncated.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Most bytes in a password: bounds the work an attacker can ask for per hash.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// OWASP's minimum Argon2id memory cost, in KiB (19 MiB).
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
/// OWASP's minimum number of passes at that memory cost.
pub const MIN_ITERATIONS: u32 = 2;

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect()
});

/// Why a password is refused, as the field violation's description.
pub fn password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if password.len() > MAX_PASSWORD_BYTES || chars > MAX_PASSWORD_CHARS {
        return Some(format!(
            "must be at most {MAX_PASSWORD_CHARS} characters ({MAX_PASSWORD_BYTES} bytes)"
        ));
    }
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.chars().all(char::is_whitespace) {
        return Some("must not be only spaces".to_owned());
    }
    if is_common(password) {
        return Some("is one of the most common passwords; choose another".to_owned());
    }
    None
}

/// Whether `password`, ignoring case, is on the common-passwords list.
pub fn is_common(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().as_str())
}

/// Cost settings of the hasher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashCost {
    /// The OWASP minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
    pub const OWASP: Self = Self {
        memory_kib: MIN_MEMORY_KIB,
        iterations: MIN_ITERATIONS,
        parallelism: 1,
    };
}

/// The hasher could not take the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashError {
    /// Every slot and every place in the queue is taken: try again shortly.
    Busy,
    /// Hashing failed or its thread died: a bug.
    Failed,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matches.
    pub matches: bool,
    /// The hash was made with other parameters than today's: store a new one.
    pub needs_rehash: bool,
}

/// Argon2id hashing and verification on a bounded blocking pool.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Calls running or waiting.
    in_flight: Arc<AtomicUsize>,
    /// Most calls running or waiting at once; more are refused as busy.
    capacity: usize,
    /// A hash of nothing anyone knows, verified when an account does not exist, so that an
    /// unknown email costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with `cost`, running at most `concurrency` hashes at once with at most
    /// `max_queued` waiting. Fails if `cost` is below the OWASP minimum or invalid.
    pub fn new(cost: HashCost, concurrency: usize, max_queued: usize) -> Result<Self, String> {
        if cost.memory_kib < MIN_MEMORY_KIB || cost.iterations < MIN_ITERATIONS {
            return Err(format!(
                "password hashing must cost at least {MIN_MEMORY_KIB} KiB and {MIN_ITERATIONS} passes"
            ));
        }
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| format!("invalid password hashing parameters: {e}"))?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
        let dummy_hash = argon2(&params)
            .hash_password(&random)
            .map_err(|e| format!("cannot hash: {e}"))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency.max(1) + max_queued,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || {
            argon2(&params)
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|_| HashError::Failed)
        })
        .await?
    }

    /// Checks `password` against `stored` (a PHC string), or against a dummy hash when there is
    /// no account, which never matches but costs the same.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let params = self.params.clone();
        self.run(move || {
            let Ok(hash) = PasswordHash::new(&stored) else {
                return Verified {
                    matches: false,
                    needs_rehash: false,
                };
            };
            let matches = argon2(&params)
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
                && exists;
            let current = hash.algorithm == argon2::ARGON2ID_IDENT
                && Params::try_from(&hash).is_ok_and(|p| same_cost(&p, &params));
            Verified {
                matches,
                needs_rehash: matches && !current,
            }
        })
        .await
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        // Take a place first, so that the number of waiting calls stays bounded.
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let permit = self.permits.clone().acquire_owned().await;
        let result = match permit {
            Ok(permit) => tokio::task::spawn_blocking(move || {
                let _permit = permit;
                work()
            })
            .await
            .map_err(|_| HashError::Failed),
            Err(_) => Err(HashError::Failed),
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        result
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn same_cost(a: &Params, b: &Params) -> bool {
    a.m_cost() == b.m_cost() && a.t_cost() == b.t_cost() && a.p_cost() == b.p_cost()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        assert_eq!(password_problem("correct horse battery"), None);
        assert_eq!(
            password_problem("é🙂é🙂é🙂é🙂"),
            None,
            "8 characters, more bytes"
        );
        assert!(password_problem("short").unwrap().contains("at least 8"));
        assert!(password_problem("        ").unwrap().contains("spaces"));
        assert!(
            password_problem(&"x".repeat(MAX_PASSWORD_CHARS + 1))
                .unwrap()
                .contains("at most")
        );
        assert!(password_problem(&"🙂".repeat(MAX_PASSWORD_BYTES / 4 + 1)).is_some());
        assert_eq!(
            password_problem(&"Ab1!".repeat(MAX_PASSWORD_CHARS / 4)),
            None,
            "long is fine"
        );
    }

    #[test]
    fn the_common_password_list_is_loaded_and_ignores_case() {
        assert!(COMMON_PASSWORDS.len() >= 10_000);
        for common in ["password", "12345678", "PASSWORD", "Qwertyuiop", "iloveyou"] {
            assert!(is_common(common), "{common}");
            assert!(password_problem(common).is_some(), "{common}");
        }
        assert!(!is_common("correct horse battery"));
    }

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(HashCost::OWASP, 2, 8).unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_cost_and_verify() {
        let hasher = hasher();
        let phc = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let other = hasher.hash("correct horse battery".into()).await.unwrap();
        assert_ne!(phc, other, "each hash has its own salt");

        let ok = hasher
            .verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap();
        assert_eq!(
            ok,
            Verified {
                matches: true,
                needs_rehash: false
            }
        );
        let wrong = hasher
            .verify("Correct horse battery".into(), Some(phc))
            .await
            .unwrap();
        assert!(!wrong.matches);
    }

    #[tokio::test]
    async fn no_account_never_matches() {
        let hasher = hasher();
        let result = hasher.verify("anything at all".into(), None).await.unwrap();
        assert!(!result.matches);
        let garbage = hasher
            .verify("anything".into(), Some("not a hash".into()))
            .await
            .unwrap();
        assert!(!garbage.matches);
    }

    #[tokio::test]
    async fn hashes_made_with_other_costs_ask_for_a_rehash() {
        let stronger = HashCost {
            memory_kib: MIN_MEMORY_KIB + 1024,
            ..HashCost::OWASP
        };
        let old = PasswordHasher::new(stronger, 1, 1).unwrap();
        let phc = old.hash("correct horse battery".into()).await.unwrap();
        let result = hasher()
            .verify("correct horse battery".into(), Some(phc))
            .await
            .unwrap();
        assert_eq!(
            result,
            Verified {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[test]
    fn costs_below_the_owasp_minimum_are_refused() {
        let weak = HashCost {
            memory_kib: 4096,
            ..HashCost::OWASP
        };
        assert!(PasswordHasher::new(weak, 1, 1).is_err());
        let weak = HashCost {
            iterations: 1,
            ..HashCost::OWASP
        };
        assert!(PasswordHasher::new(weak, 1, 1).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_piling_up() {
        let hasher = PasswordHasher::new(HashCost::OWASP, 1, 1).unwrap();
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash("correct horse battery".into()).await })
            })
            .collect();
        let mut busy = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => {}
                Err(HashError::Busy) => busy += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(busy >= 1, "one running and one queued at most");
        assert!(
            hasher.hash("correct horse battery".into()).await.is_ok(),
            "free again"
        );
    }
}
