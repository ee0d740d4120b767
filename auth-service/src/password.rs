//! Passwords: the rules a new password must meet, and Argon2id hashing on dedicated threads.
//!
//! Hashing is deliberately expensive (19 MiB and two passes at the OWASP minimum), so it never
//! runs on the async workers: a fixed number of dedicated threads hash, at the lowest CPU
//! priority, a bounded number of calls wait for one, and calls beyond that are refused as busy.
//! A login flood therefore costs bounded memory and only the CPU the other RPCs leave.

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock, Mutex, OnceLock},
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};

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
    /// Every worker is busy and the queue is full: try again shortly.
    Busy,
    /// Hashing failed or its worker died: a bug.
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

/// Hashing is bulk work: it takes only the CPU the other calls leave, so a login flood cannot
/// slow them down. On Linux the hashing threads run under `SCHED_IDLE`, which a kernel that
/// preempts on wakeup gives way to at once (at nice 19 under the normal policy, a woken thread
/// could still wait for the hash's time slice to end: that put milliseconds into the tail of
/// every call during a flood); elsewhere at the lowest priority of the normal policy. A hash
/// is one library call that cannot yield, so on a kernel that lets a woken thread wait behind
/// a busy idle-priority one (the benchmark machine's, up to a 4 ms tick) the wait remains;
/// the benchmark's busy-loop controls show that cost apart from the hashing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    let lowered = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Idle,
        ),
    );
    #[cfg(not(target_os = "linux"))]
    let lowered =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    if let Err(error) = lowered {
        tracing::warn!(?error, "cannot lower the priority of a hashing thread");
    }
}

/// Work for a hashing thread.
type Job = Box<dyn FnOnce(&mut Workspace) + Send>;

/// Argon2id hashing and verification on a fixed set of dedicated threads.
///
/// Each thread keeps one Argon2 memory area for its whole life, so memory stays at
/// `threads × cost.memory_kib` however many hashes run, instead of growing with allocator
/// arenas as short-lived 19 MiB allocations on a pool of blocking threads would. A bounded
/// queue in front of the threads turns overload into [`HashError::Busy`].
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: std::sync::mpsc::SyncSender<Job>,
    params: Params,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with `cost` on `threads` dedicated threads, with at most `max_queued` calls
    /// waiting for one. Fails if `cost` is below the OWASP minimum or invalid.
    pub fn new(cost: HashCost, threads: usize, max_queued: usize) -> Result<Self, String> {
        if cost.memory_kib < MIN_MEMORY_KIB || cost.iterations < MIN_ITERATIONS {
            return Err(format!(
                "password hashing must cost at least {MIN_MEMORY_KIB} KiB and {MIN_ITERATIONS} passes"
            ));
        }
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| format!("invalid password hashing parameters: {e}"))?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(max_queued);
        let queue = Arc::new(Mutex::new(queue));
        let dummy = Arc::new(OnceLock::new());
        for index in 0..threads.max(1) {
            let queue = queue.clone();
            let mut workspace = Workspace {
                params: params.clone(),
                memory: Vec::new(),
                dummy: dummy.clone(),
            };
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = queue
                            .lock()
                            .map_err(drop)
                            .and_then(|q| q.recv().map_err(drop));
                        match job {
                            Ok(job) => job(&mut workspace),
                            // Every sender is gone: the hasher was dropped.
                            Err(()) => return,
                        }
                    }
                })
                .map_err(|e| format!("cannot start a hashing thread: {e}"))?;
        }
        Ok(Self { jobs, params })
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move |workspace| workspace.hash(password.as_bytes()))
            .await?
    }

    /// Checks `password` against `stored` (a PHC string), or against a dummy hash when there is
    /// no account, which never matches but costs the same.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        self.run(move |workspace| workspace.verify(password.as_bytes(), stored.as_deref()))
            .await?
    }

    /// Queues `work` for a hashing thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Workspace) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |workspace| {
            let _ = reply.send(work(workspace));
        });
        self.jobs.try_send(job).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => HashError::Busy,
            std::sync::mpsc::TrySendError::Disconnected(_) => HashError::Failed,
        })?;
        result.await.map_err(|_| HashError::Failed)
    }
}

/// What a hashing thread keeps between jobs.
struct Workspace {
    params: Params,
    /// The Argon2 memory for `params`, allocated on first use and reused.
    memory: Vec<Block>,
    /// The hash verified for accounts that do not exist, made on first need.
    dummy: Arc<OnceLock<String>>,
}

impl Workspace {
    /// Runs Argon2 with `params` into `out`, reusing the kept memory when the cost matches.
    fn argon2_into(
        &mut self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), HashError> {
        let blocks = params.block_count();
        let hasher = Argon2::new(algorithm, version, params);
        let result = if same_cost(hasher.params(), &self.params) {
            if self.memory.len() != blocks {
                self.memory = vec![Block::default(); blocks];
            }
            hasher.hash_password_into_with_memory(password, salt, out, &mut self.memory)
        } else {
            // A hash made with other costs (before a settings change): rare, so no reuse.
            hasher.hash_password_into(password, salt, out)
        };
        result.map_err(|_| HashError::Failed)
    }

    fn hash(&mut self, password: &[u8]) -> Result<String, HashError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| HashError::Failed)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let params = self.params.clone();
        self.argon2_into(
            Algorithm::Argon2id,
            Version::V0x13,
            params.clone(),
            password,
            &salt,
            &mut out,
        )?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|_| HashError::Failed)?,
            salt: Some(Salt::new(&salt).map_err(|_| HashError::Failed)?),
            hash: Some(Output::new(&out).map_err(|_| HashError::Failed)?),
        };
        Ok(phc.to_string())
    }

    fn verify(&mut self, password: &[u8], stored: Option<&str>) -> Result<Verified, HashError> {
        let exists = stored.is_some();
        let stored = match stored {
            Some(stored) => stored.to_owned(),
            None => match self.dummy.get() {
                Some(dummy) => dummy.clone(),
                None => {
                    let mut random = [0u8; 32];
                    getrandom::fill(&mut random).map_err(|_| HashError::Failed)?;
                    let dummy = self.hash(&random)?;
                    self.dummy.get_or_init(|| dummy).clone()
                }
            },
        };
        let no_match = Verified {
            matches: false,
            needs_rehash: false,
        };
        let Ok(hash) = PasswordHash::new(&stored) else {
            return Ok(no_match);
        };
        let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
            Algorithm::try_from(hash.algorithm.as_str()),
            Params::try_from(&hash),
            hash.salt,
            hash.hash,
        ) else {
            return Ok(no_match);
        };
        let version = hash
            .version
            .and_then(|v| Version::try_from(v).ok())
            .unwrap_or_default();
        let mut out = vec![0u8; expected.len()];
        let current = algorithm == Algorithm::Argon2id
            && version == Version::V0x13
            && same_cost(&params, &self.params);
        self.argon2_into(
            algorithm,
            version,
            params,
            password,
            salt.as_ref(),
            &mut out,
        )?;
        // Output's equality is constant-time.
        let matches = exists && Output::new(&out).is_ok_and(|out| out == expected);
        Ok(Verified {
            matches,
            needs_rehash: matches && !current,
        })
    }
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

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crates_own_phc_code() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hasher().hash("correct horse battery".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );

        let theirs = Argon2::default()
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        let result = hasher()
            .verify("correct horse battery".into(), Some(theirs))
            .await
            .unwrap();
        assert_eq!(
            result,
            Verified {
                matches: true,
                needs_rehash: false
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

/// Property tests of the password rules (validation only: nothing here hashes).
#[cfg(test)]
mod fuzz {
    use prop::sample::Index;
    use proptest::prelude::*;

    use super::*;

    /// Any character, with blanks and wide ones (up to four bytes) more often than chance.
    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => any::<char>(),
            2 => prop::sample::select(vec![' ', '\t', '\n', '\u{3000}', '\0']),
            2 => prop::sample::select(vec!['a', 'Z', '1', 'é', '中', '🙂', '\u{10ffff}']),
        ]
    }

    /// Short strings, and strings around the character and byte limits.
    fn password() -> impl Strategy<Value = String> {
        let ends = || prop::collection::vec(tricky_char(), 0..6);
        prop_oneof![
            prop::collection::vec(tricky_char(), 0..20).prop_map(String::from_iter),
            (
                ends(),
                tricky_char(),
                MAX_PASSWORD_CHARS - 8..MAX_PASSWORD_CHARS + 4,
                ends()
            )
                .prop_map(|(head, fill, run, tail)| {
                    let mut text = String::from_iter(head);
                    text.extend(std::iter::repeat_n(fill, run));
                    text.extend(tail);
                    text
                }),
            (tricky_char(), 0..4 * MAX_PASSWORD_BYTES).prop_map(|(c, n)| c.to_string().repeat(n)),
        ]
    }

    /// The common-passwords list in a fixed order, to pick from.
    static LISTED: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        let mut listed: Vec<&'static str> = COMMON_PASSWORDS.iter().copied().collect();
        listed.sort_unstable();
        listed
    });

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_password_is_accepted_iff_8_to_256_characters_at_most_1_kib_not_blank_nor_common(
            password in password(),
        ) {
            let chars = password.chars().count();
            let valid = (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars)
                && password.len() <= MAX_PASSWORD_BYTES
                && !password.chars().all(char::is_whitespace)
                && !COMMON_PASSWORDS.contains(password.to_lowercase().as_str());
            let problem = password_problem(&password);
            prop_assert_eq!(problem.is_none(), valid, "{:?}", problem);
        }

        #[test]
        fn listed_passwords_are_refused_in_any_ascii_case(
            at in any::<Index>(),
            upper in prop::collection::vec(any::<bool>(), 1..16),
        ) {
            let entry = LISTED[at.index(LISTED.len())];
            prop_assert_eq!(entry.to_lowercase(), entry, "the list is lower-cased");
            let typed: String = entry
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            prop_assert!(is_common(&typed), "{:?}", typed);
            prop_assert!(password_problem(&typed).is_some());
        }

        #[test]
        fn commonness_ignores_case(password in password()) {
            let common = is_common(&password);
            prop_assert_eq!(is_common(&password.to_lowercase()), common);
            prop_assert_eq!(is_common(&password.to_ascii_uppercase()), common);
        }
    }
}
