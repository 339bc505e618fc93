//! Credentials: the HS256 JWTs users get from the auth service, and the service tokens the
//! services present to each other.
//!
//! The two are signed with different secrets (`jwt_secret` and `cluster_secret`) and carry
//! different issuers and audiences, so a user token is refused by every internal gRPC
//! service even where an operator reused one secret for both. A user token also names its
//! user's generation: a deleted user, re-registered under the same name, does not inherit
//! the old tokens.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    Request, Status,
};

/// Issuer of user tokens.
pub const USER_ISSUER: &str = "mom-auth";
/// Audience of user tokens: the REST API.
pub const USER_AUDIENCE: &str = "mom-api";
/// Issuer of service tokens.
pub const SERVICE_ISSUER: &str = "mom-cluster";
/// Audience of service tokens: the internal gRPC services.
pub const SERVICE_AUDIENCE: &str = "mom-internal";
/// User tokens expire on the second their `exp` names.
const USER_TOKEN_LEEWAY_SECS: u64 = 0;
/// Services run on different machines; allow for their clocks to disagree a little.
const SERVICE_TOKEN_LEEWAY_SECS: u64 = 30;
/// gRPC metadata naming the user a service acts for (the gateway on a user's request).
pub const ACTING_USER: &str = "x-mom-user";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    /// The generation of the user record the token was issued for (see `mom_catalog::access`).
    pub gen: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Missing)
}

fn decode_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Invalid(e.to_string()),
    }
}

/// Tokens already verified, with what they proved and their expiry, so that the HMAC, base64
/// and JSON work is done once per token, not once per call: a service presents the same
/// token on every call until it renews it, a client on every request. A token is taken from
/// here only while it is unexpired by the same rule `jsonwebtoken` applies (`exp` at least
/// `now - leeway`); a different token, forged or not, is a different key and verified in full.
struct Verified<T> {
    /// Token text → (what it proved, its `exp`); at most `MAX_VERIFIED` entries.
    by_token: Mutex<std::collections::HashMap<String, (T, u64)>>,
    leeway: u64,
}

/// Distinct live tokens remembered; past this the expired ones are dropped, and if that is
/// not enough, all (a burst of distinct tokens then costs a full verification each, no more).
const MAX_VERIFIED: usize = 1_024;

impl<T: Clone> Verified<T> {
    fn new(leeway: u64) -> Self {
        Verified {
            by_token: Mutex::new(std::collections::HashMap::new()),
            leeway,
        }
    }

    fn valid(&self, exp: u64, now: u64) -> bool {
        exp >= now.saturating_sub(self.leeway)
    }

    fn get(&self, token: &str) -> Option<T> {
        let now = now_secs();
        let by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        by_token
            .get(token)
            .filter(|(_, exp)| self.valid(*exp, now))
            .map(|(proved, _)| proved.clone())
    }

    fn remember(&self, token: &str, proved: T, exp: u64) {
        let now = now_secs();
        let mut by_token = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        if by_token.len() >= MAX_VERIFIED {
            by_token.retain(|_, (_, exp)| self.valid(*exp, now));
            if by_token.len() >= MAX_VERIFIED {
                by_token.clear();
            }
        }
        by_token.insert(token.to_owned(), (proved, exp));
    }
}

/// Issues and verifies user tokens with the user-token secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    verified: Arc<Verified<Claims>>,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            verified: Arc::new(Verified::new(USER_TOKEN_LEEWAY_SECS)),
        }
    }

    /// A token for generation `generation` of user `user`.
    pub fn issue(&self, user: &str, generation: u64, lifetime: Duration) -> String {
        let now = now_secs();
        self.issue_claims(&Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + lifetime.as_secs(),
            iss: USER_ISSUER.to_owned(),
            aud: USER_AUDIENCE.to_owned(),
            gen: generation,
        })
    }

    pub fn issue_claims(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Checks signature, expiry, issuer and audience. Whether the user still exists is the
    /// caller's question (the gateway asks its `AccessCache`).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            return Ok(claims);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = USER_TOKEN_LEEWAY_SECS;
        validation.set_issuer(&[USER_ISSUER]);
        validation.set_audience(&[USER_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(decode_error)?;
        self.verified.remember(token, claims.clone(), claims.exp);
        Ok(claims)
    }

    /// Verifies an `Authorization: Bearer <token>` header value.
    pub fn verify_bearer(&self, header: Option<&str>) -> Result<Claims, TokenError> {
        self.verify(bearer(header)?)
    }
}

/// Who is calling an internal service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceIdentity {
    /// A broker node, by node id.
    Node(String),
    Gateway,
    Partitioning,
    Auth,
}

impl fmt::Display for ServiceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceIdentity::Node(id) => write!(f, "node:{id}"),
            ServiceIdentity::Gateway => f.write_str("gateway"),
            ServiceIdentity::Partitioning => f.write_str("partitioning"),
            ServiceIdentity::Auth => f.write_str("auth"),
        }
    }
}

impl ServiceIdentity {
    pub fn parse(text: &str) -> Option<ServiceIdentity> {
        match text {
            "gateway" => Some(ServiceIdentity::Gateway),
            "partitioning" => Some(ServiceIdentity::Partitioning),
            "auth" => Some(ServiceIdentity::Auth),
            _ => text
                .strip_prefix("node:")
                .filter(|id| !id.is_empty())
                .map(|id| ServiceIdentity::Node(id.to_owned())),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ServiceClaims {
    sub: String,
    iat: u64,
    exp: u64,
    iss: String,
    aud: String,
}

/// Issues and verifies service tokens with the cluster secret, which no user ever sees.
#[derive(Clone)]
pub struct ServiceKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    verified: Arc<Verified<ServiceIdentity>>,
}

impl ServiceKeys {
    pub fn new(cluster_secret: &str) -> Self {
        ServiceKeys {
            encoding: EncodingKey::from_secret(cluster_secret.as_bytes()),
            decoding: DecodingKey::from_secret(cluster_secret.as_bytes()),
            verified: Arc::new(Verified::new(SERVICE_TOKEN_LEEWAY_SECS)),
        }
    }

    pub fn issue(&self, identity: &ServiceIdentity, lifetime: Duration) -> String {
        let now = now_secs();
        let claims = ServiceClaims {
            sub: identity.to_string(),
            iat: now,
            exp: now + lifetime.as_secs(),
            iss: SERVICE_ISSUER.to_owned(),
            aud: SERVICE_AUDIENCE.to_owned(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<ServiceIdentity, TokenError> {
        if let Some(identity) = self.verified.get(token) {
            return Ok(identity);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = SERVICE_TOKEN_LEEWAY_SECS;
        validation.set_issuer(&[SERVICE_ISSUER]);
        validation.set_audience(&[SERVICE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<ServiceClaims>(token, &self.decoding, &validation)
            .map_err(decode_error)?
            .claims;
        let identity = ServiceIdentity::parse(&claims.sub)
            .ok_or_else(|| TokenError::Invalid(format!("unknown service {:?}", claims.sub)))?;
        self.verified.remember(token, identity.clone(), claims.exp);
        Ok(identity)
    }
}

/// gRPC server interceptor of an internal service: refuses calls without a valid service
/// token (`UNAUTHENTICATED`; user tokens included) or from a service that has no business
/// there (`PERMISSION_DENIED`), and hands the caller's identity to the handler in the
/// request's extensions.
#[derive(Clone)]
pub struct RequireService {
    keys: ServiceKeys,
    allowed: fn(&ServiceIdentity) -> bool,
}

impl RequireService {
    pub fn new(keys: ServiceKeys, allowed: fn(&ServiceIdentity) -> bool) -> Self {
        RequireService { keys, allowed }
    }
}

impl Interceptor for RequireService {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let identity = bearer(header)
            .and_then(|token| self.keys.verify(token))
            .map_err(|e| {
                Status::unauthenticated(format!("internal service; needs a service token: {e}"))
            })?;
        if !(self.allowed)(&identity) {
            return Err(Status::permission_denied(format!(
                "{identity} may not call this service"
            )));
        }
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

/// The identity [`RequireService`] found on a request.
pub fn caller_identity<T>(request: &Request<T>) -> Option<&ServiceIdentity> {
    request.extensions().get::<ServiceIdentity>()
}

/// The user a service call is made for, if any.
pub fn acting_user<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(ACTING_USER)
        .and_then(|v| v.to_str().ok())
}

/// How long a service token lives, and how old a cached one may get before it is replaced.
const SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
const SERVICE_TOKEN_RENEWAL: Duration = Duration::from_secs(5 * 60);

struct CredentialsInner {
    keys: ServiceKeys,
    identity: ServiceIdentity,
    /// The current `Bearer` header and when it was minted; replaced well before it expires.
    /// Held only to read or swap the value.
    cached: Mutex<(Instant, MetadataValue<Ascii>)>,
}

/// A service's own credentials for calling other services. Cheap to clone.
#[derive(Clone)]
pub struct ServiceCredentials {
    inner: Arc<CredentialsInner>,
}

impl ServiceCredentials {
    pub fn new(cluster_secret: &str, identity: ServiceIdentity) -> Self {
        let keys = ServiceKeys::new(cluster_secret);
        let header = Self::mint(&keys, &identity);
        ServiceCredentials {
            inner: Arc::new(CredentialsInner {
                keys,
                identity,
                cached: Mutex::new((Instant::now(), header)),
            }),
        }
    }

    fn mint(keys: &ServiceKeys, identity: &ServiceIdentity) -> MetadataValue<Ascii> {
        let token = keys.issue(identity, SERVICE_TOKEN_LIFETIME);
        MetadataValue::try_from(format!("Bearer {token}"))
            .expect("a JWT is plain ASCII and fits a header")
    }

    pub fn identity(&self) -> &ServiceIdentity {
        &self.inner.identity
    }

    fn header(&self) -> MetadataValue<Ascii> {
        let mut cached = self
            .inner
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.0.elapsed() > SERVICE_TOKEN_RENEWAL {
            *cached = (
                Instant::now(),
                Self::mint(&self.inner.keys, &self.inner.identity),
            );
        }
        cached.1.clone()
    }

    /// An interceptor for calls made on the service's own behalf.
    pub fn attach(&self) -> AttachService {
        AttachService {
            credentials: self.clone(),
            user: None,
        }
    }

    /// An interceptor for calls made for `user` (checked by the caller already; the callee
    /// checks again what the user may do).
    pub fn acting_for(&self, user: &str) -> Result<AttachService, TokenError> {
        let user = MetadataValue::try_from(user)
            .map_err(|e| TokenError::Invalid(format!("user name: {e}")))?;
        Ok(AttachService {
            credentials: self.clone(),
            user: Some(user),
        })
    }
}

/// gRPC client interceptor: attaches the service token (and the acting user) to every call.
#[derive(Clone)]
pub struct AttachService {
    credentials: ServiceCredentials,
    user: Option<MetadataValue<Ascii>>,
}

impl Interceptor for AttachService {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.credentials.header());
        if let Some(user) = &self.user {
            metadata.insert(ACTING_USER, user.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            iat: 1,
            exp,
            iss: USER_ISSUER.into(),
            aud: USER_AUDIENCE.into(),
            gen: 7,
        }
    }

    #[test]
    fn issued_token_verifies() {
        let keys = TokenKeys::new("s3cret");
        let token = keys.issue("alice", 7, Duration::from_secs(60));
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.gen), ("alice", 7));
    }

    #[test]
    fn token_from_another_secret_is_refused() {
        let token = TokenKeys::new("one").issue("alice", 1, Duration::from_secs(60));
        assert!(matches!(
            TokenKeys::new("two").verify(&token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn a_remembered_token_counts_only_until_it_expires() {
        let verified = Verified::new(30);
        let now = now_secs();
        verified.remember("fresh", 1, now + 60);
        verified.remember("within leeway", 2, now - 10);
        verified.remember("stale", 3, now - 31);
        assert_eq!(verified.get("fresh"), Some(1));
        assert_eq!(verified.get("within leeway"), Some(2));
        assert_eq!(verified.get("stale"), None);
        assert_eq!(verified.get("never seen"), None);
    }

    #[test]
    fn a_verified_token_verifies_again_and_its_forgery_still_does_not() {
        let keys = ServiceKeys::new("cluster");
        let token = keys.issue(&ServiceIdentity::Gateway, Duration::from_secs(60));
        assert_eq!(keys.verify(&token).unwrap(), ServiceIdentity::Gateway);
        assert_eq!(keys.verify(&token).unwrap(), ServiceIdentity::Gateway);
        let forged = format!("{}x", token);
        assert!(keys.verify(&forged).is_err());
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::new("s3cret");
        let token = keys.issue_claims(&claims(2));
        assert!(matches!(keys.verify(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let keys = TokenKeys::new("s3cret");
        let far = now_secs() + 600;
        let mut other_issuer = claims(far);
        other_issuer.iss = "someone".into();
        let mut other_audience = claims(far);
        other_audience.aud = SERVICE_AUDIENCE.into();
        for claims in [other_issuer, other_audience] {
            assert!(matches!(
                keys.verify(&keys.issue_claims(&claims)),
                Err(TokenError::Invalid(_))
            ));
        }
    }

    #[test]
    fn bearer_header_is_required() {
        let keys = TokenKeys::new("s3cret");
        assert!(matches!(keys.verify_bearer(None), Err(TokenError::Missing)));
        assert!(matches!(
            keys.verify_bearer(Some("Basic x")),
            Err(TokenError::Missing)
        ));
    }

    #[test]
    fn a_user_token_is_no_service_token_even_with_the_same_secret() {
        let user = TokenKeys::new("same").issue("gateway", 1, Duration::from_secs(60));
        assert!(ServiceKeys::new("same").verify(&user).is_err());
        let service =
            ServiceKeys::new("same").issue(&ServiceIdentity::Gateway, Duration::from_secs(60));
        assert!(TokenKeys::new("same").verify(&service).is_err());
    }

    #[test]
    fn service_identities_round_trip() {
        let keys = ServiceKeys::new("cluster");
        for identity in [
            ServiceIdentity::Node("node1".into()),
            ServiceIdentity::Gateway,
            ServiceIdentity::Partitioning,
            ServiceIdentity::Auth,
        ] {
            let token = keys.issue(&identity, Duration::from_secs(60));
            assert_eq!(keys.verify(&token).unwrap(), identity);
        }
        assert_eq!(ServiceIdentity::parse("node:"), None);
        assert_eq!(ServiceIdentity::parse("alice"), None);
    }

    #[test]
    fn the_server_interceptor_sorts_callers() {
        let credentials = ServiceCredentials::new("cluster", ServiceIdentity::Gateway);
        let request = credentials
            .acting_for("alice")
            .unwrap()
            .call(Request::new(()))
            .unwrap();
        let mut gateway_only = RequireService::new(ServiceKeys::new("cluster"), |id| {
            *id == ServiceIdentity::Gateway
        });
        let accepted = gateway_only.call(request).unwrap();
        assert_eq!(caller_identity(&accepted), Some(&ServiceIdentity::Gateway));
        assert_eq!(acting_user(&accepted), Some("alice"));

        let node = ServiceCredentials::new("cluster", ServiceIdentity::Node("n".into()));
        let denied = gateway_only.call(node.attach().call(Request::new(())).unwrap());
        assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);

        let mut user_request = Request::new(());
        let user_token = TokenKeys::new("users").issue("alice", 1, Duration::from_secs(60));
        user_request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {user_token}")).unwrap(),
        );
        let refused = gateway_only.call(user_request);
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
