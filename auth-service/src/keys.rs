//! Signing keys: Ed25519 key pairs kept in the users database, so that a restart logs nobody
//! out and every instance signs with the same keys.
//!
//! The newest key signs. A key that has been superseded stays published (in `GetJwks`, and
//! accepted by `VerifyToken`) until every token it may have signed has expired: the access-token
//! lifetime, plus the time other instances may take to notice the new key, plus the clock-skew
//! leeway. Rotation adds a new key: `auth-service rotate-signing-key`, or automatically once the
//! active key is older than the configured maximum age. Instances re-read the keys every
//! reload interval, and at once (rate-limited) when they meet an unknown `kid`.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{EncodingKey, Header};
use todo_common::{
    time::{Micros, micros, now_micros},
    token::{
        ALGORITHM, AccessClaims, Identity, KeySet, LEEWAY_SECS, TOKEN_TYPE, TokenError,
        TokenVerifier,
    },
};

use crate::store::{SigningKeyRecord, StoreError, UserStore};

/// Unknown-`kid` reloads happen at most this often.
const MIN_RELOAD_GAP: Duration = Duration::from_secs(1);

/// A public key as published in the key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// Key id.
    pub kid: String,
    /// Ed25519 public key, base64url without padding.
    pub x: String,
}

/// How long keys live and how they are trusted.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// How often instances re-read the keys.
    pub reload_interval: Duration,
    /// Rotate once the active key is this old.
    pub max_key_age: Duration,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
}

impl KeyPolicy {
    /// How long a superseded key stays published.
    fn retention(&self) -> Micros {
        micros(self.access_token_ttl + self.reload_interval + Duration::from_secs(LEEWAY_SECS))
    }
}

/// A key set loaded at one moment.
struct KeyRing {
    signing_kid: String,
    signing_key: EncodingKey,
    published: Vec<PublicKey>,
    verify: KeySet,
}

/// Why keys could not be loaded or made.
#[derive(Debug)]
pub enum KeyError {
    /// The store failed.
    Store(StoreError),
    /// A stored key is corrupt, or randomness failed.
    Corrupt(String),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "{e}"),
            Self::Corrupt(e) => write!(f, "signing keys: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Makes a new random Ed25519 key.
pub fn generate_key(now: Micros) -> Result<SigningKeyRecord, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Corrupt(format!("no randomness: {e}")))?;
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    Ok(SigningKeyRecord {
        kid: uuid::Uuid::now_v7().to_string(),
        private_key: STANDARD.encode(seed),
        public_key: URL_SAFE_NO_PAD.encode(public.as_bytes()),
        create_time: now,
    })
}

/// Adds a new signing key to `store`; it signs from the next reload of each instance. Returns
/// its key id.
pub async fn rotate(store: &impl UserStore) -> Result<String, KeyError> {
    let key = generate_key(now_micros())?;
    store.insert_signing_key(&key).await?;
    Ok(key.kid)
}

/// The jsonwebtoken signing key of a stored key.
pub fn encoding_key(record: &SigningKeyRecord) -> Result<EncodingKey, KeyError> {
    let seed: [u8; 32] = STANDARD
        .decode(&record.private_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| KeyError::Corrupt(format!("key {} is not a 32-byte seed", record.kid)))?;
    let der = ed25519_dalek::SigningKey::from_bytes(&seed)
        .to_pkcs8_der()
        .map_err(|e| KeyError::Corrupt(format!("key {}: {e}", record.kid)))?;
    Ok(EncodingKey::from_ed_der(der.as_bytes()))
}

fn build_ring(
    records: &[SigningKeyRecord],
    now: Micros,
    policy: &KeyPolicy,
) -> Result<KeyRing, KeyError> {
    let newest = records
        .first()
        .ok_or_else(|| KeyError::Corrupt("no signing key".to_owned()))?;
    let mut published = vec![PublicKey {
        kid: newest.kid.clone(),
        x: newest.public_key.clone(),
    }];
    // records are newest first: each older key is retired when its successor appeared.
    for pair in records.windows(2) {
        let (successor, key) = (&pair[0], &pair[1]);
        if now < successor.create_time.saturating_add(policy.retention()) {
            published.push(PublicKey {
                kid: key.kid.clone(),
                x: key.public_key.clone(),
            });
        }
    }
    let mut verify = KeySet::new();
    for key in &published {
        verify
            .insert_ed25519(&key.kid, &key.x)
            .map_err(|e| KeyError::Corrupt(format!("key {}: {e}", key.kid)))?;
    }
    Ok(KeyRing {
        signing_kid: newest.kid.clone(),
        signing_key: encoding_key(newest)?,
        published,
        verify,
    })
}

/// The signing keys of this instance: signs access tokens and verifies them.
pub struct Keys<S> {
    store: Arc<S>,
    policy: KeyPolicy,
    verifier: TokenVerifier,
    ring: RwLock<Arc<KeyRing>>,
    last_reload: Mutex<Instant>,
}

impl<S> std::fmt::Debug for Keys<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S: UserStore> Keys<S> {
    /// Loads the keys from `store`, making the first one if there is none, and rotating if the
    /// active one is too old.
    pub async fn load(store: Arc<S>, policy: KeyPolicy) -> Result<Self, KeyError> {
        let ring = Self::read(&store, &policy).await?;
        Ok(Self {
            verifier: TokenVerifier::new(&policy.issuer, &policy.audience),
            store,
            policy,
            ring: RwLock::new(Arc::new(ring)),
            last_reload: Mutex::new(Instant::now()),
        })
    }

    async fn read(store: &S, policy: &KeyPolicy) -> Result<KeyRing, KeyError> {
        let now = now_micros();
        let mut records = store.signing_keys().await?;
        let too_old = records
            .first()
            .is_none_or(|newest| now - newest.create_time > micros(policy.max_key_age));
        if too_old {
            let key = generate_key(now)?;
            store.insert_signing_key(&key).await?;
            tracing::info!(kid = key.kid, "new signing key");
            records.insert(0, key);
        }
        build_ring(&records, now, policy)
    }

    /// Re-reads the keys (another instance or the rotation command may have added one).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let ring = Self::read(&self.store, &self.policy).await?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The published public keys, the signing key first.
    pub fn published(&self) -> Vec<PublicKey> {
        self.current().published.clone()
    }

    /// Signs `claims` with the active key.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let ring = self.current();
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(ring.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &ring.signing_key)
            .map_err(|e| KeyError::Corrupt(format!("signing failed: {e}")))
    }

    /// Verifies an access token. A token naming a key this instance has not seen makes it
    /// re-read the keys first (at most once a second), in case another instance rotated.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        match self.verifier.verify(token, &self.current().verify) {
            Err(TokenError::UnknownKey(kid)) => {
                let due = self
                    .last_reload
                    .lock()
                    .map(|last| last.elapsed() >= MIN_RELOAD_GAP)
                    .unwrap_or(true);
                if due {
                    if let Err(error) = self.reload().await {
                        tracing::warn!(%error, "cannot reload signing keys");
                    }
                    return self.verifier.verify(token, &self.current().verify);
                }
                Err(TokenError::UnknownKey(kid))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            access_token_ttl: Duration::from_secs(900),
            reload_interval: Duration::from_secs(60),
            max_key_age: Duration::from_secs(30 * 86_400),
            issuer: "iss".into(),
            audience: "aud".into(),
        }
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: "user-1".into(),
            email: "a@example.com".into(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: "j".into(),
        }
    }

    #[test]
    fn a_generated_key_signs_tokens_its_public_half_verifies() {
        // Proves the crypto backend is wired: jsonwebtoken panics at first use without one.
        let record = generate_key(now_micros()).unwrap();
        let ring = build_ring(std::slice::from_ref(&record), now_micros(), &policy()).unwrap();
        let now = now_micros() / 1_000_000;
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(record.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims(now), &ring.signing_key).unwrap();
        let identity = TokenVerifier::new("iss", "aud")
            .verify(&token, &ring.verify)
            .unwrap();
        assert_eq!(identity.user_id, "user-1");

        // The other half of another key does not.
        let other = generate_key(now_micros()).unwrap();
        let mut keys = KeySet::new();
        keys.insert_ed25519(&record.kid, &other.public_key).unwrap();
        assert_eq!(
            TokenVerifier::new("iss", "aud").verify(&token, &keys),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn superseded_keys_stay_published_until_their_tokens_expire() {
        let hour = 3_600_000_000;
        let old = generate_key(0).unwrap();
        let new = generate_key(10 * hour).unwrap();
        let records = [new.clone(), old.clone()];
        let policy = policy();

        let soon = build_ring(&records, 10 * hour + 1, &policy).unwrap();
        assert_eq!(soon.signing_kid, new.kid);
        let kids: Vec<_> = soon.published.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [new.kid.as_str(), old.kid.as_str()]);

        let later = build_ring(&records, 10 * hour + policy.retention(), &policy).unwrap();
        let kids: Vec<_> = later.published.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [new.kid.as_str()]);
        assert!(!later.verify.contains(&old.kid));
    }
}
