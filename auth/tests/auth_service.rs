//! Runs the real `mom-auth` binary and talks HTTP to it.

use mom_common::token::{Claims, TokenKeys};
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tempfile::TempDir;

const SECRET: &str = "test-secret-for-mom-auth";
const LIFETIME_SECS: u64 = 600;
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running auth process; killed when dropped so a failing test leaves nothing behind.
struct AuthProcess {
    child: Child,
    base: String,
    log: PathBuf,
}

impl AuthProcess {
    /// Starts the service on a free loopback port with its database at `database`.
    async fn start(dir: &Path, database: &Path) -> AuthProcess {
        let port = free_port();
        let config = dir.join(format!("auth-{port}.toml"));
        fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndatabase = {database:?}\njwt_secret = \"{SECRET}\"\n\
                 token_lifetime_secs = {LIFETIME_SECS}\n"
            ),
        )
        .unwrap();
        let log = dir.join(format!("auth-{port}.log"));
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mom-auth"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn mom-auth");
        let mut process = AuthProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        process.wait_healthy().await;
        process
    }

    async fn wait_healthy(&mut self) {
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mom-auth exited early with {status}:\n{}", self.log_text());
            }
            if let Ok(resp) = client.get(self.url("/health")).send().await {
                if resp.status() == StatusCode::OK {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "mom-auth not healthy after {STARTUP_DEADLINE:?}:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AuthProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the OS for a free port. Another process could take it before the service binds it,
/// but on loopback in a test run that window is negligible.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Fixture {
    dir: TempDir,
    auth: AuthProcess,
    http: Client,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // A nested path checks that the service creates missing parent directories.
        let auth = AuthProcess::start(dir.path(), &dir.path().join("data/auth/users.db")).await;
        Fixture {
            dir,
            auth,
            http: Client::new(),
        }
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("data/auth/users.db")
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.auth.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    async fn register(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/auth/register",
            json!({ "username": username, "password": password }),
        )
        .await
    }

    async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/auth/login",
            json!({ "username": username, "password": password }),
        )
        .await
    }

    async fn whoami(&self, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.auth.url("/auth/whoami"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        read(req.send().await.unwrap()).await
    }
}

/// Status and JSON body; fails the test if the body is not JSON, since every answer must be.
async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    (status, body)
}

fn assert_error(body: &Value) {
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "expected an error body, got {body}"
    );
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn health_answers_ok() {
    let f = Fixture::new().await;
    let (status, body) = read(f.http.get(f.auth.url("/health")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn register_then_login_issues_a_verifiable_token() {
    let f = Fixture::new().await;
    let (status, body) = f.register("alice", "correct horse").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({ "username": "alice" }));

    let (status, body) = f.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], LIFETIME_SECS);
    let token = body["token"].as_str().unwrap();
    let claims = TokenKeys::new(SECRET)
        .verify(token)
        .expect("token verifies with the secret");
    assert_eq!(claims.sub, "alice");
    assert!(claims.exp >= now_secs() + LIFETIME_SECS - 60, "{claims:?}");

    let (status, body) = f.whoami(Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "username": "alice" }));
}

#[tokio::test]
async fn duplicate_registration_conflicts() {
    let f = Fixture::new().await;
    assert_eq!(f.register("bob", "password-1").await.0, StatusCode::CREATED);
    let (status, body) = f.register("bob", "password-2").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "user bob already exists");
    // The first password still holds.
    assert_eq!(f.login("bob", "password-1").await.0, StatusCode::OK);
    assert_eq!(
        f.login("bob", "password-2").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let f = Fixture::new().await;
    assert_eq!(
        f.register("carol", "the-password").await.0,
        StatusCode::CREATED
    );
    let wrong = f.login("carol", "not-the-password").await;
    let unknown = f.login("nobody", "the-password").await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.1, json!({ "error": "invalid username or password" }));
    assert_eq!(unknown, wrong);
}

#[tokio::test]
async fn invalid_registrations_are_rejected_with_400() {
    let f = Fixture::new().await;
    for (username, password) in [
        ("dave", "short"),
        ("a/b", "long-enough-password"),
        ("", "long-enough-password"),
        ("..", "long-enough-password"),
    ] {
        let (status, body) = f.register(username, password).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{username:?}/{password:?}: {body}"
        );
        assert_error(&body);
    }
    let (status, body) = f.register("dave", &"x".repeat(1025)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // None of them created a user.
    assert_eq!(f.login("dave", "short").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unusable_bodies_get_json_errors() {
    let f = Fixture::new().await;
    let url = f.auth.url("/auth/register");

    let malformed = f
        .http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"username\": \"eve\", ")
        .send()
        .await
        .unwrap();
    let (status, body) = read(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body);

    let missing_field = f.post("/auth/login", json!({ "username": "eve" })).await;
    assert_eq!(missing_field.0, StatusCode::BAD_REQUEST);
    assert_error(&missing_field.1);

    let wrong_type = f
        .http
        .post(&url)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(r#"{"username":"eve","password":"long-enough"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = read(wrong_type).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body);

    let huge = f.register("eve", &"x".repeat(100 * 1024)).await;
    assert_eq!(huge.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&huge.1);

    let (status, body) = read(f.http.get(f.auth.url("/nope")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body);

    let (status, body) = read(f.http.get(&url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body);
}

#[tokio::test]
async fn whoami_refuses_missing_forged_and_expired_tokens() {
    let f = Fixture::new().await;

    let (status, body) = f.whoami(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);

    let forged = TokenKeys::new("some-other-secret").issue("alice", Duration::from_secs(600));
    let (status, body) = f.whoami(Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);

    let now = now_secs();
    let expired = TokenKeys::new(SECRET).issue_claims(&Claims {
        sub: "alice".into(),
        iat: now - 120,
        exp: now - 60,
    });
    let (status, body) = f.whoami(Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);

    let (status, _) = f.whoami(Some("not-a-jwt")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn passwords_are_stored_as_argon2_hashes() {
    let f = Fixture::new().await;
    assert_eq!(
        f.register("frank", "plaintext-secret").await.0,
        StatusCode::CREATED
    );
    // WAL mode lets this reader in while the service holds the database open.
    let db = rusqlite::Connection::open(f.database()).unwrap();
    let hash: String = db
        .query_row(
            "SELECT password_hash FROM users WHERE username = 'frank'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(hash.starts_with("$argon2"), "{hash}");
    assert!(!hash.contains("plaintext-secret"));
}

#[tokio::test]
async fn users_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("users.db");
    let http = Client::new();
    let credentials = json!({ "username": "grace", "password": "persistent-pw" });

    let first = AuthProcess::start(dir.path(), &database).await;
    let resp = http
        .post(first.url("/auth/register"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Killed without a chance to shut down cleanly: the registration must already be durable.
    drop(first);

    let second = AuthProcess::start(dir.path(), &database).await;
    let resp = http
        .post(second.url("/auth/login"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .post(second.url("/auth/register"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}
