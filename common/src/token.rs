//! Access tokens: HS256 JWTs issued by the auth service and checked by every other service.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{metadata::MetadataValue, service::Interceptor, Request, Status};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
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

/// Issues and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    pub fn issue(&self, user: &str, lifetime: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.issue_claims(&Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + lifetime.as_secs(),
        })
    }

    pub fn issue_claims(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    /// Verifies an `Authorization: Bearer <token>` header value.
    pub fn verify_bearer(&self, header: Option<&str>) -> Result<Claims, TokenError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        self.verify(token)
    }
}

/// gRPC server interceptor: refuses calls without a valid bearer token.
#[derive(Clone)]
pub struct RequireToken(pub TokenKeys);

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.0.verify_bearer(header) {
            Ok(_) => Ok(request),
            Err(e) => Err(Status::unauthenticated(e.to_string())),
        }
    }
}

/// gRPC client interceptor: attaches a bearer token to every call.
#[derive(Clone)]
pub struct AttachToken(pub MetadataValue<tonic::metadata::Ascii>);

impl AttachToken {
    pub fn new(token: &str) -> Result<Self, TokenError> {
        MetadataValue::try_from(format!("Bearer {token}"))
            .map(AttachToken)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies() {
        let keys = TokenKeys::new("s3cret");
        let token = keys.issue("alice", Duration::from_secs(60));
        assert_eq!(keys.verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn token_from_another_secret_is_refused() {
        let token = TokenKeys::new("one").issue("alice", Duration::from_secs(60));
        assert!(matches!(
            TokenKeys::new("two").verify(&token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::new("s3cret");
        let token = keys.issue_claims(&Claims {
            sub: "alice".into(),
            iat: 1,
            exp: 2,
        });
        assert!(matches!(keys.verify(&token), Err(TokenError::Expired)));
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
}
