//! Authentication without a call per request: access tokens are verified here with the auth
//! service's public keys, fetched with `AuthService.GetJwks`.
//!
//! The keys are fetched at start (retrying until the auth service answers), refreshed
//! periodically, and fetched again when a token names an unknown `kid` (at most once per
//! [`MIN_REFRESH_GAP`], so forged `kid`s cannot flood the auth service). When the auth service
//! is down, the keys already fetched keep working.
//!
//! [`AuthLayer`] wraps the task service: it verifies the bearer token of every call and puts
//! the [`Caller`] into the request's extensions, where handlers read it.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::{Request, Response};
use todo_common::{
    Shutdown,
    token::{Identity, KeySet, TokenError, TokenVerifier, bearer_token_of_headers},
};
use todo_proto::auth::v1::{GetJwksRequest, auth_service_client::AuthServiceClient};
use tonic::{Status, body::Body, server::NamedService, transport::Channel};
use tower::{Layer, Service};

use crate::error::TaskError;

/// Unknown-`kid` refreshes happen at most this often.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);
/// First retry delay while the auth service has never answered; doubles up to the max.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The verified caller of a request, put into its extensions by [`AuthLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub Identity);

/// The auth service's public keys, cached.
#[derive(Debug)]
pub struct AuthKeys {
    client: AuthServiceClient<Channel>,
    verifier: TokenVerifier,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serialises fetches and remembers when the last one started.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl AuthKeys {
    /// Keys fetched from the auth service at `channel`, for tokens from `issuer` to `audience`.
    pub fn new(channel: Channel, issuer: &str, audience: &str) -> Self {
        Self {
            client: AuthServiceClient::new(channel),
            verifier: TokenVerifier::new(issuer, audience),
            keys: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether keys have been fetched.
    pub fn loaded(&self) -> bool {
        self.current().is_some()
    }

    /// Fetches the key set now.
    pub async fn fetch(&self) -> Result<usize, Status> {
        let mut last_fetch = self.last_fetch.lock().await;
        *last_fetch = Some(Instant::now());
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<usize, Status> {
        let jwks = self
            .client
            .clone()
            .get_jwks(GetJwksRequest {})
            .await?
            .into_inner();
        let mut keys = KeySet::new();
        for key in jwks.keys {
            // Only what we issue: Ed25519 signing keys for EdDSA.
            if key.kty != "OKP" || key.crv != "Ed25519" || key.alg != "EdDSA" || key.r#use != "sig"
            {
                continue;
            }
            if let Err(error) = keys.insert_ed25519(&key.kid, &key.x) {
                tracing::warn!(kid = key.kid, %error, "ignoring a malformed public key");
            }
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        Ok(count)
    }

    /// Makes sure a fetch starts after `asked_at`, but never sooner than [`MIN_REFRESH_GAP`]
    /// after the previous one: callers meeting an unknown key wait (at most the gap) and share
    /// one fetch, so a flood of made-up key ids costs the auth service one call a second.
    async fn refresh_after(&self, asked_at: Instant) {
        loop {
            let mut last_fetch = self.last_fetch.lock().await;
            if let Some(at) = *last_fetch {
                if at >= asked_at {
                    // Someone fetched since we asked: that answer is ours too.
                    return;
                }
                let since = at.elapsed();
                if since < MIN_REFRESH_GAP {
                    drop(last_fetch);
                    tokio::time::sleep(MIN_REFRESH_GAP - since).await;
                    continue;
                }
            }
            *last_fetch = Some(Instant::now());
            if let Err(status) = self.fetch_locked().await {
                tracing::warn!(code = ?status.code(), "cannot refresh the auth service's keys");
            }
            return;
        }
    }

    /// Verifies an access token.
    pub async fn verify(&self, token: &str) -> Result<Identity, TaskError> {
        if let Some(keys) = self.current() {
            match self.verifier.verify(token, &keys) {
                Err(TokenError::UnknownKey(_)) => {}
                other => return other.map_err(TaskError::Token),
            }
        }
        // No keys yet, or a key we have not seen: maybe the auth service rotated.
        self.refresh_after(Instant::now()).await;
        let keys = self.current().ok_or(TaskError::KeysUnavailable)?;
        self.verifier.verify(token, &keys).map_err(|e| match e {
            TokenError::UnknownKey(_) => TaskError::Token(TokenError::Invalid),
            other => TaskError::Token(other),
        })
    }

    /// Keeps the keys fresh until shutdown: fetches until the auth service first answers, then
    /// every `interval`. Failures keep the keys already held.
    pub async fn maintain(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        let mut delay = FIRST_RETRY;
        loop {
            match self.fetch().await {
                Ok(count) => {
                    tracing::info!(keys = count, "fetched the auth service's public keys");
                    break;
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), retry_in = ?delay, "auth service keys unavailable");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.wait() => return,
            }
            delay = (delay * 2).min(MAX_RETRY);
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.wait() => return,
            }
            if let Err(status) = self.fetch().await {
                tracing::warn!(code = ?status.code(), "cannot refresh the auth service's keys; keeping the old ones");
            }
        }
    }
}

/// Verifies the bearer token of every call to the wrapped service.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    keys: Arc<AuthKeys>,
}

impl AuthLayer {
    /// A layer verifying with `keys`.
    pub fn new(keys: Arc<AuthKeys>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// A service whose calls all carry a verified [`Caller`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    keys: Arc<AuthKeys>,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone is ready only after poll_ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let keys = self.keys.clone();
        Box::pin(async move {
            let verified = match bearer_token_of_headers(request.headers()) {
                Ok(token) => keys.verify(token).await,
                Err(error) => Err(TaskError::Token(error)),
            };
            match verified {
                Ok(identity) => {
                    request.extensions_mut().insert(Caller(identity));
                    inner.call(request).await
                }
                Err(error) => {
                    let (parts, ()) = Status::from(error).into_http::<()>().into_parts();
                    Ok(Response::from_parts(parts, Body::empty()))
                }
            }
        })
    }
}
