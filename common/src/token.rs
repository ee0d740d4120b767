//! Access tokens as every service sees them: the claims, the bearer metadata, and verification
//! against a set of public keys chosen by the token's `kid` (never by anything else the token
//! says).
//!
//! An access token is a JWT signed with Ed25519 (`alg: EdDSA`, RFC 8037) with header
//! `typ: at+jwt` (RFC 9068) and a `kid`. Verification allows exactly that algorithm and checks
//! the signature, `typ`, `iss`, `aud`, `exp` and `nbf` (with [`LEEWAY_SECS`] of clock skew).

use std::{collections::HashMap, fmt};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

/// The only signing algorithm issued and accepted.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;
/// The `typ` header of an access token (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// Longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the auth service's configured name.
    pub iss: String,
    /// Audience: the services the token is for.
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// The user's email when the token was issued.
    pub email: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not valid before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// Who a verified access token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user_id: String,
    /// The user's email (`email`).
    pub email: String,
    /// When the token expires, seconds since the Unix epoch (`exp`).
    pub expire_time: i64,
}

/// Why a request carries no usable identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// No `authorization: Bearer …` metadata.
    Missing,
    /// Signed by a key the verifier does not know (yet): fetch the key set again.
    UnknownKey(String),
    /// Expired (`exp` in the past).
    Expired,
    /// Anything else: not a JWT, wrong algorithm or type, bad signature, wrong issuer or
    /// audience, not yet valid, missing claims.
    Invalid,
}

impl TokenError {
    /// The `ErrorInfo.reason` for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Expired => "TOKEN_EXPIRED",
            Self::UnknownKey(_) | Self::Invalid => "TOKEN_INVALID",
        }
    }

    /// A message safe to send.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Missing => "missing bearer token in the authorization metadata",
            Self::Expired => "access token expired",
            Self::UnknownKey(_) | Self::Invalid => "invalid access token",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TokenError {}

/// Public verification keys by key id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the Ed25519 public key `x` (base64url, as in a JWK) under `kid`.
    pub fn insert_ed25519(
        &mut self,
        kid: &str,
        x: &str,
    ) -> Result<(), jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_ed_components(x)?;
        self.keys.insert(kid.to_owned(), key);
        Ok(())
    }

    /// Whether `kid` is in the set.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Tokens verified lately, remembered until they expire.
const CACHE_ENTRIES: usize = 4096;

/// Verifies access tokens for one issuer and audience.
///
/// A token that passed is remembered until it expires: a client sends the same token with
/// every call for its whole life, and an Ed25519 verification costs far more than the rest of a
/// simple call. Only tokens that passed every check are remembered, so a forged one is always
/// checked in full; keys leave the key set only after the tokens they signed have expired.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    validation: Validation,
    /// Token → (identity, key id).
    verified: std::sync::Arc<std::sync::Mutex<HashMap<String, (Identity, String)>>>,
}

impl TokenVerifier {
    /// A verifier accepting tokens from `issuer` for `audience`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            validation,
            verified: std::sync::Arc::default(),
        }
    }

    /// Checks `token` against `keys` and returns who it speaks for.
    pub fn verify(&self, token: &str, keys: &KeySet) -> Result<Identity, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        // Still signed by a key of the set (a key removed ends its tokens at once).
        if let Some((identity, kid)) = remembered
            && keys.contains(&kid)
        {
            if now <= identity.expire_time + leeway {
                return Ok(identity);
            }
            return Err(TokenError::Expired);
        }
        let (identity, kid) = self.verify_in_full(token, keys)?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= CACHE_ENTRIES {
            // Drop the expired ones; if that is not enough, start afresh.
            verified.retain(|_, (identity, _)| now <= identity.expire_time + leeway);
            if verified.len() >= CACHE_ENTRIES {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), (identity.clone(), kid));
        Ok(identity)
    }

    /// Every check, and the key id that verified the token.
    fn verify_in_full(&self, token: &str, keys: &KeySet) -> Result<(Identity, String), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != ALGORITHM || header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = keys
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(TokenError::Invalid);
        }
        let identity = Identity {
            user_id: claims.sub,
            email: claims.email,
            expire_time: claims.exp,
        };
        Ok((identity, kid))
    }
}

/// The bearer token of a request's `authorization` metadata (`Bearer <token>`, the scheme in
/// any case).
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, TokenError> {
    bearer_token_of_headers(metadata.as_ref())
}

/// [`bearer_token`] for plain HTTP headers (in a tower layer, before tonic decodes the call).
pub fn bearer_token_of_headers(headers: &http::HeaderMap) -> Result<&str, TokenError> {
    let value = headers
        .get("authorization")
        .ok_or(TokenError::Missing)?
        .to_str()
        .map_err(|_| TokenError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Invalid);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_metadata_is_parsed_strictly() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer_token(&metadata), Err(TokenError::Missing));
        metadata.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Ok("abc.def.ghi"));
        metadata.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Ok("abc"));
        metadata.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Err(TokenError::Invalid));
        metadata.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&metadata), Err(TokenError::Missing));
    }

    /// The Ed25519 key of RFC 8037, appendix A: a known key, so that this crate, which only
    /// verifies, can check a real signature (jsonwebtoken compiles without a crypto backend and
    /// then panics on first use).
    const RFC8037_SEED_HEX: &str =
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    pub(super) const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn rfc8037_key() -> jsonwebtoken::EncodingKey {
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410): a fixed prefix, then the seed.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend(
            (0..32).map(|i| u8::from_str_radix(&RFC8037_SEED_HEX[2 * i..2 * i + 2], 16).unwrap()),
        );
        jsonwebtoken::EncodingKey::from_ed_der(&der)
    }

    pub(super) fn token(claims: &AccessClaims, typ: &str) -> String {
        let mut header = jsonwebtoken::Header::new(ALGORITHM);
        header.typ = Some(typ.to_owned());
        header.kid = Some("k1".to_owned());
        jsonwebtoken::encode(&header, claims, &rfc8037_key()).unwrap()
    }

    #[test]
    fn real_signatures_verify_and_every_claim_is_checked() {
        let mut keys = KeySet::new();
        keys.insert_ed25519("k1", RFC8037_X).unwrap();
        let verifier = TokenVerifier::new("iss", "aud");
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
        let claims = AccessClaims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: "user-1".into(),
            email: "a@example.com".into(),
            iat: now,
            nbf: now,
            exp: now + 60,
            jti: "j".into(),
        };
        let identity = verifier.verify(&token(&claims, TOKEN_TYPE), &keys).unwrap();
        assert_eq!(
            (identity.user_id.as_str(), identity.expire_time),
            ("user-1", now + 60)
        );

        let expired = AccessClaims {
            exp: now - 120,
            ..claims.clone()
        };
        assert_eq!(
            verifier.verify(&token(&expired, TOKEN_TYPE), &keys),
            Err(TokenError::Expired)
        );
        for bad in [
            AccessClaims {
                nbf: now + 120,
                ..claims.clone()
            },
            AccessClaims {
                aud: "other".into(),
                ..claims.clone()
            },
            AccessClaims {
                iss: "other".into(),
                ..claims.clone()
            },
            AccessClaims {
                sub: String::new(),
                ..claims.clone()
            },
        ] {
            assert_eq!(
                verifier.verify(&token(&bad, TOKEN_TYPE), &keys),
                Err(TokenError::Invalid),
                "{bad:?}"
            );
        }
        assert_eq!(
            verifier.verify(&token(&claims, "JWT"), &keys),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verifier.verify(&token(&claims, TOKEN_TYPE), &KeySet::new()),
            Err(TokenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn garbage_and_oversized_tokens_are_invalid_without_a_key_lookup() {
        let verifier = TokenVerifier::new("iss", "aud");
        let keys = KeySet::new();
        for token in ["", "garbage", "a.b.c", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
            assert_eq!(
                verifier.verify(token, &keys),
                Err(TokenError::Invalid),
                "{token:.20}"
            );
        }
    }
}

/// Property tests: any `authorization` value and any token string is refused with an error,
/// never a panic, and no edit of a real token passes.
#[cfg(test)]
mod fuzz {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use prop::sample::Index;
    use proptest::prelude::*;

    use super::{
        tests::{RFC8037_X, token},
        *,
    };

    fn headers(value: &http::HeaderValue) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", value.clone());
        headers
    }

    /// Header values: any bytes, and `<scheme><blanks><token>` with the scheme in any case.
    fn authorization() -> impl Strategy<Value = Vec<u8>> {
        let scheme = prop_oneof![
            prop::sample::select(vec![
                "Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Bearer:", ""
            ])
            .prop_map(str::to_owned),
            "[ -~]{0,8}",
        ];
        let blanks = prop::sample::select(vec!["", " ", "  ", "\t", " \t "]);
        let token = prop_oneof!["[ -~]{0,40}", "[A-Za-z0-9_.-]{1,40}"];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..48),
            (scheme, blanks.clone(), token, blanks)
                .prop_map(|(s, b, t, end)| format!("{s}{b}{t}{end}").into_bytes()),
        ]
    }

    /// Strings shaped like JWTs: base64url JSON headers of every `alg`, `typ` and `kid` mix.
    fn jwt_like() -> impl Strategy<Value = (String, Option<String>)> {
        let alg = prop::sample::select(vec!["EdDSA", "HS256", "RS256", "none", "ES256"]);
        let typ = prop::option::of(prop::sample::select(vec!["at+jwt", "JWT", "AT+JWT"]));
        let kid = prop::option::of(prop_oneof![Just("k1".to_owned()), "[a-z0-9]{1,8}"]);
        let segment = "[A-Za-z0-9_-]{0,60}";
        (alg, typ, kid, segment, segment).prop_map(|(alg, typ, kid, claims, signature)| {
            let mut header = format!(r#"{{"alg":"{alg}""#);
            if let Some(typ) = typ {
                header += &format!(r#","typ":"{typ}""#);
            }
            if let Some(kid) = &kid {
                header += &format!(r#","kid":"{kid}""#);
            }
            header += "}";
            let token = format!("{}.{claims}.{signature}", URL_SAFE_NO_PAD.encode(header));
            // The key id the verifier would look up, when the header passes its checks.
            let looked_up = (alg == "EdDSA" && typ == Some(TOKEN_TYPE))
                .then_some(kid)
                .flatten();
            (token, looked_up)
        })
    }

    /// One edit of a token.
    #[derive(Clone, Debug)]
    enum Edit {
        Truncate(Index),
        Replace(Index, char),
        Insert(Index, char),
        Remove(Index),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let char = prop_oneof![
            4 => prop::sample::select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
                    .chars()
                    .collect::<Vec<_>>()
            ),
            1 => any::<char>(),
        ];
        prop_oneof![
            any::<Index>().prop_map(Edit::Truncate),
            (any::<Index>(), char.clone()).prop_map(|(at, c)| Edit::Replace(at, c)),
            (any::<Index>(), char).prop_map(|(at, c)| Edit::Insert(at, c)),
            any::<Index>().prop_map(Edit::Remove),
        ]
    }

    fn apply(token: &str, edit: &Edit) -> String {
        let mut chars: Vec<char> = token.chars().collect();
        match edit {
            Edit::Truncate(at) => chars.truncate(at.index(chars.len())),
            Edit::Replace(at, c) => {
                let i = at.index(chars.len());
                chars[i] = *c;
            }
            Edit::Insert(at, c) => chars.insert(at.index(chars.len() + 1), *c),
            Edit::Remove(at) => {
                chars.remove(at.index(chars.len()));
            }
        }
        chars.into_iter().collect()
    }

    /// A key set with the RFC 8037 key as `k1`, and a token it signed, valid for ten minutes.
    fn signed() -> (KeySet, String) {
        let mut keys = KeySet::new();
        keys.insert_ed25519("k1", RFC8037_X).unwrap();
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
        let claims = AccessClaims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: "user-1".into(),
            email: "a@example.com".into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "j".into(),
        };
        (keys, token(&claims, TOKEN_TYPE))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn authorization_values_give_the_bearer_token_or_an_error(value in authorization()) {
            // Bytes that cannot be a header value never reach us.
            let Ok(value) = http::HeaderValue::from_bytes(&value) else {
                return Ok(());
            };
            let headers = headers(&value);
            let result = bearer_token_of_headers(&headers);
            // The documented form, spelled independently: visible ASCII, `bearer` in any case,
            // one space, then the token less surrounding blanks.
            let expected = value.to_str().ok().and_then(|text| {
                let scheme = text.get(..7)?;
                scheme.eq_ignore_ascii_case("bearer ").then(|| text[7..].trim())
            });
            match expected {
                Some("") => prop_assert_eq!(result, Err(TokenError::Missing)),
                Some(token) => prop_assert_eq!(result, Ok(token)),
                None => prop_assert_eq!(result, Err(TokenError::Invalid)),
            }
        }

        #[test]
        fn any_string_is_refused_as_a_token(
            token in prop_oneof![
                any::<String>(),
                "[ -~]{0,200}",
                "[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,90}",
            ],
        ) {
            let (keys, _) = signed();
            let result = TokenVerifier::new("iss", "aud").verify(&token, &keys);
            prop_assert_eq!(result, Err(TokenError::Invalid));
        }

        #[test]
        fn jwt_shaped_strings_are_refused_naming_only_an_unknown_key(
            (token, looked_up) in jwt_like(),
        ) {
            let (keys, _) = signed();
            let result = TokenVerifier::new("iss", "aud").verify(&token, &keys);
            match looked_up {
                Some(kid) if kid != "k1" => {
                    prop_assert_eq!(result, Err(TokenError::UnknownKey(kid)));
                }
                _ => prop_assert_eq!(result, Err(TokenError::Invalid)),
            }
        }

        #[test]
        fn no_edit_of_a_signed_token_passes(edit in edit()) {
            let (keys, token) = signed();
            let verifier = TokenVerifier::new("iss", "aud");
            prop_assert!(verifier.verify(&token, &keys).is_ok());
            let edited = apply(&token, &edit);
            prop_assume!(edited != token);
            let result = verifier.verify(&edited, &keys);
            prop_assert!(
                matches!(result, Err(TokenError::Invalid | TokenError::UnknownKey(_))),
                "{:?} for {:?}",
                result,
                edit
            );
        }
    }
}
