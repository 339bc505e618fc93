//! Runs the real `mom-auth` binary against a real ZooKeeper (one per test) and talks HTTP to
//! it: registration, login and its throttling, the caller's own token routes, and the admin
//! routes, with the invariant that a deleted, reset or revoked user's tokens are refused.

use mom_common::token::{Claims, TokenKeys, USER_AUDIENCE, USER_ISSUER};
use mom_testkit::{free_port, ZooKeeper};
use reqwest::{header, Client, Method, StatusCode};
use serde_json::{json, Value};
use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tempfile::TempDir;

const SECRET: &str = "test-secret-for-mom-auth";
const LIFETIME_SECS: u64 = 600;
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "root-password-1";

/// What a test changes in the service's config.
#[derive(Clone)]
struct Options {
    open_registration: bool,
    logins_per_user: u32,
    logins_per_address: u32,
    registrations_per_address: u32,
    trusted_proxies: &'static [&'static str],
}

impl Default for Options {
    fn default() -> Self {
        // High limits, so that only the tests about throttling meet them.
        Options {
            open_registration: true,
            logins_per_user: 1_000,
            logins_per_address: 1_000,
            registrations_per_address: 1_000,
            trusted_proxies: &[],
        }
    }
}

/// A running auth process; killed when dropped so a failing test leaves nothing behind.
struct AuthProcess {
    child: Child,
    base: String,
    log: PathBuf,
}

impl AuthProcess {
    /// Starts the service on a free loopback port with its database at `database`.
    async fn start(dir: &Path, database: &Path, zookeeper: &str, options: &Options) -> Self {
        let port = free_port();
        let config = dir.join(format!("auth-{port}.toml"));
        let trusted: Vec<String> = options
            .trusted_proxies
            .iter()
            .map(|t| format!("{t:?}"))
            .collect();
        fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndatabase = {database:?}\njwt_secret = \"{SECRET}\"\n\
                 token_lifetime_secs = {LIFETIME_SECS}\nopen_registration = {}\n\
                 logins_per_user_per_minute = {}\nlogins_per_address_per_minute = {}\n\
                 registrations_per_address_per_minute = {}\ntrusted_proxies = [{}]\n\
                 [bootstrap_admin]\nusername = \"{ADMIN}\"\npassword = \"{ADMIN_PASSWORD}\"\n\
                 [zookeeper]\nconnect = \"{zookeeper}\"\nsession_timeout_ms = 4000\n\
                 digest = \"mom:test-digest\"\n",
                options.open_registration,
                options.logins_per_user,
                options.logins_per_address,
                options.registrations_per_address,
                trusted.join(", "),
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

struct Fixture {
    // Dropped in this order: the service before its ZooKeeper.
    auth: AuthProcess,
    zookeeper: ZooKeeper,
    dir: TempDir,
    http: Client,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with(Options::default()).await
    }

    async fn with(options: Options) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let zookeeper = ZooKeeper::start();
        // A nested path checks that the service creates missing parent directories.
        let database = dir.path().join("data/auth/users.db");
        let auth =
            AuthProcess::start(dir.path(), &database, &zookeeper.connect_string(), &options).await;
        Fixture {
            auth,
            zookeeper,
            dir,
            http: client(),
        }
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("data/auth/users.db")
    }

    async fn call(
        &self,
        method: Method,
        path: impl AsRef<str>,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.auth.url(path.as_ref()));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, None, Some(body)).await
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

    /// Logs in and returns the token; fails the test otherwise.
    async fn token(&self, username: &str, password: &str) -> String {
        let (status, body) = self.login(username, password).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn admin_token(&self) -> String {
        self.token(ADMIN, ADMIN_PASSWORD).await
    }

    /// Registers a user and logs it in.
    async fn user_token(&self, username: &str, password: &str) -> String {
        let (status, body) = self.register(username, password).await;
        assert_eq!(status, StatusCode::CREATED, "register {username}: {body}");
        self.token(username, password).await
    }

    async fn whoami(&self, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, "/auth/whoami", token, None).await
    }

    async fn refresh(&self, token: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/auth/refresh", Some(token), None)
            .await
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Status and JSON body; fails the test if the body is not JSON, since every answer must be
/// (a 204 has none, and reads as `null`).
async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    if status == StatusCode::NO_CONTENT {
        assert!(text.is_empty(), "204 with a body: {text:?}");
        return (status, Value::Null);
    }
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

fn claims(token: &str) -> Claims {
    TokenKeys::new(SECRET)
        .verify(token)
        .expect("token verifies with the secret")
}

/// `Retry-After` of a 429, in seconds.
fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get(header::RETRY_AFTER)
        .expect("429 without Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds")
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
    assert_eq!(body["role"], "user");
    let token = body["token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims.sub, "alice");
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        (USER_ISSUER, USER_AUDIENCE)
    );
    assert!(claims.exp >= now_secs() + LIFETIME_SECS - 60, "{claims:?}");

    let (status, body) = f.whoami(Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "username": "alice", "role": "user" }));
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
    // The bootstrap admin's name is taken too.
    assert_eq!(
        f.register(ADMIN, "another-password").await.0,
        StatusCode::CONFLICT
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
        ("dave", "        "),
        ("dave", " \t \n \t  "),
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
    let (_, body) = f.register("dave", "        ").await;
    assert_eq!(
        body["error"],
        "password must contain at least one character that is not whitespace"
    );
    let (status, body) = f.register("dave", &"x".repeat(1025)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // None of them created a user.
    assert_eq!(f.login("dave", "short").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.login("dave", "        ").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Spaces around other characters are fine.
    assert_eq!(f.register("dave", "   x    ").await.0, StatusCode::CREATED);
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

    for (method, path) in [
        (Method::GET, "/auth/register"),
        (Method::GET, "/auth/refresh"),
        (Method::DELETE, "/auth/users"),
        (Method::GET, "/auth/users/alice/role"),
    ] {
        let (status, body) = f.call(method, path, None, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_error(&body);
    }
}

#[tokio::test]
async fn whoami_refuses_missing_forged_expired_and_foreign_generation_tokens() {
    let f = Fixture::new().await;
    let token = f.user_token("alice", "alice-password").await;
    let real = claims(&token);

    let (status, body) = f.whoami(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);

    let forged =
        TokenKeys::new("some-other-secret").issue("alice", real.gen, Duration::from_secs(600));
    let (status, body) = f.whoami(Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);

    let now = now_secs();
    let expired = TokenKeys::new(SECRET).issue_claims(&Claims {
        iat: now - 120,
        exp: now - 60,
        ..real.clone()
    });
    let (status, body) = f.whoami(Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);

    // Signed right, but for another generation of "alice" (or of a name never registered).
    for (sub, gen) in [("alice", real.gen.wrapping_add(1)), ("ghost", real.gen)] {
        let other = TokenKeys::new(SECRET).issue(sub, gen, Duration::from_secs(600));
        let (status, body) = f.whoami(Some(&other)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{sub}");
        assert_error(&body);
    }

    let (status, _) = f.whoami(Some("not-a-jwt")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.whoami(Some(&token)).await.0, StatusCode::OK);
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
async fn users_and_their_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let zookeeper = ZooKeeper::start();
    let database = dir.path().join("users.db");
    let options = Options::default();
    let http = client();
    let credentials = json!({ "username": "grace", "password": "persistent-pw" });

    let first =
        AuthProcess::start(dir.path(), &database, &zookeeper.connect_string(), &options).await;
    let resp = http
        .post(first.url("/auth/register"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let token = read(
        http.post(first.url("/auth/login"))
            .json(&credentials)
            .send()
            .await
            .unwrap(),
    )
    .await
    .1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Killed without a chance to shut down cleanly: the registration must already be durable.
    drop(first);

    let second =
        AuthProcess::start(dir.path(), &database, &zookeeper.connect_string(), &options).await;
    // The same record, so the same generation: the old token still stands.
    let (status, body) = read(
        http.get(second.url("/auth/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
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

#[tokio::test]
async fn users_of_a_database_without_zookeeper_records_are_published_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let zookeeper = ZooKeeper::start();
    let database = dir.path().join("old.db");
    // The schema and contents of a database from before ZooKeeper records.
    let old = rusqlite::Connection::open(&database).unwrap();
    old.execute_batch(
        "CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
                             created_at_ms INTEGER)",
    )
    .unwrap();
    old.execute(
        "INSERT INTO users VALUES ('veteran', ?1, 1)",
        [mom_auth::password::hash("veteran-password").unwrap()],
    )
    .unwrap();
    drop(old);

    let auth = AuthProcess::start(
        dir.path(),
        &database,
        &zookeeper.connect_string(),
        &Options::default(),
    )
    .await;
    let f = Fixture {
        auth,
        zookeeper,
        dir,
        http: client(),
    };
    let (status, body) = f.login("veteran", "veteran-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "user");
    let admin = f.admin_token().await;
    let (status, body) = f.call(Method::GET, "/auth/users", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "users": [
            { "username": ADMIN, "role": "admin" },
            { "username": "veteran", "role": "user" },
        ] })
    );
}

#[tokio::test]
async fn closed_registration_is_refused_and_admins_create_users() {
    let f = Fixture::with(Options {
        open_registration: false,
        ..Options::default()
    })
    .await;
    let (status, body) = f.register("mallory", "mallory-password").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({ "error": "registration is closed; an admin creates users" })
    );
    assert_eq!(
        f.login("mallory", "mallory-password").await.0,
        StatusCode::UNAUTHORIZED
    );

    let admin = f.admin_token().await;
    let new_user = |name: &str, role: Option<&str>| {
        let mut body = json!({ "username": name, "password": format!("{name}-password") });
        if let Some(role) = role {
            body["role"] = json!(role);
        }
        body
    };
    let (status, body) = f
        .call(
            Method::POST,
            "/auth/users",
            Some(&admin),
            Some(new_user("alice", None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({ "username": "alice", "role": "user" }));
    let (status, body) = f
        .call(
            Method::POST,
            "/auth/users",
            Some(&admin),
            Some(new_user("ops", Some("admin"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "admin");

    let (status, body) = f
        .call(
            Method::POST,
            "/auth/users",
            Some(&admin),
            Some(new_user("alice", None)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body);
    let bad = json!({ "username": "bob", "password": "        " });
    let (status, _) = f
        .call(Method::POST, "/auth/users", Some(&admin), Some(bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bad_role = json!({ "username": "bob", "password": "bob-password", "role": "root" });
    let (status, _) = f
        .call(Method::POST, "/auth/users", Some(&admin), Some(bad_role))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = f.login("alice", "alice-password").await;
    assert_eq!((status, &body["role"]), (StatusCode::OK, &json!("user")));
    let ops = f.token("ops", "ops-password").await;
    let (status, body) = f.whoami(Some(&ops)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "username": "ops", "role": "admin" }));
}

#[tokio::test]
async fn repeated_wrong_passwords_throttle_the_user_name_even_for_the_right_password() {
    let f = Fixture::with(Options {
        logins_per_user: 10,
        ..Options::default()
    })
    .await;
    assert_eq!(
        f.register("target", "the-right-one").await.0,
        StatusCode::CREATED
    );
    let body = json!({ "username": "target", "password": "a-wrong-guess" });
    let mut first_throttled = None;
    let mut not_throttled = 0;
    let mut retry = 0;
    for attempt in 0..300 {
        let resp = f
            .http
            .post(f.auth.url("/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        match resp.status() {
            StatusCode::TOO_MANY_REQUESTS => {
                retry = retry_after(&resp);
                assert!((1..=6).contains(&retry), "Retry-After {retry}");
                first_throttled.get_or_insert(attempt);
                assert_error(&read(resp).await.1);
            }
            StatusCode::UNAUTHORIZED => not_throttled += 1,
            other => panic!("attempt {attempt}: {other}"),
        }
    }
    let first = first_throttled.expect("never throttled");
    assert!(first <= 15, "first 429 only at attempt {first}");
    // The burst, and at most a cell or two refilled while the loop ran.
    assert!(not_throttled <= 12, "{not_throttled} guesses were checked");

    // Locked: the right password is refused too, but another user is not.
    let (status, body) = f.login("target", "the-right-one").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body);
    // (fails the test unless the login succeeds)
    f.user_token("bystander", "bystander-pw").await;

    // One cell refills every 6 s; after Retry-After the right password works again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (status, body) = f.login("target", "the-right-one").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn logins_and_registrations_are_counted_per_client_address() {
    let f = Fixture::with(Options {
        logins_per_address: 3,
        registrations_per_address: 2,
        trusted_proxies: &["127.0.0.1"],
        ..Options::default()
    })
    .await;
    let login = |client: &Client, forwarded: Option<&str>, user: &str| {
        let mut req = client
            .post(f.auth.url("/auth/login"))
            .json(&json!({ "username": user, "password": "whatever-pass" }));
        if let Some(forwarded) = forwarded {
            req = req.header("X-Forwarded-For", forwarded);
        }
        req.send()
    };
    let direct = client();
    // Each attempt names another user, so that only the address limit can bite.
    for n in 0..3 {
        let resp = login(&direct, Some("203.0.113.7"), &format!("u{n}"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = login(&direct, Some("198.51.100.1, 203.0.113.7"), "u9")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&resp) >= 1);
    assert_error(&read(resp).await.1);
    // Another forwarded address, and the proxy's own, are counted apart.
    for forwarded in [Some("203.0.113.8"), None, Some("not an address")] {
        let resp = login(&direct, forwarded, "u10").await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{forwarded:?}");
    }

    // 127.0.0.2 is no trusted proxy: what it forwards is ignored and it is counted itself.
    let untrusted = Client::builder()
        .local_address(Some("127.0.0.2".parse::<IpAddr>().unwrap()))
        .build()
        .unwrap();
    for n in 0..3 {
        let forwarded = format!("192.0.2.{n}");
        let resp = login(&untrusted, Some(&forwarded), &format!("v{n}"))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = login(&untrusted, Some("192.0.2.200"), "v9").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);

    // Registrations have their own quota.
    let register = |forwarded: &'static str, user: &'static str| {
        f.http
            .post(f.auth.url("/auth/register"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "username": user, "password": "good-password" }))
            .send()
    };
    assert_eq!(
        register("203.0.113.7", "r1").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        register("203.0.113.7", "r2").await.unwrap().status(),
        StatusCode::CREATED
    );
    let resp = register("203.0.113.7", "r3").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&resp) >= 1);
    assert_eq!(
        register("203.0.113.9", "r3").await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn admins_list_delete_change_roles_and_reset_passwords() {
    let f = Fixture::new().await;
    let admin = f.admin_token().await;
    let alice = f.user_token("alice", "alice-password").await;
    f.user_token("bob", "bob-password").await;
    let list = || f.call(Method::GET, "/auth/users", Some(&admin), None);

    let (status, body) = list().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "users": [
            { "username": "alice", "role": "user" },
            { "username": "bob", "role": "user" },
            { "username": ADMIN, "role": "admin" },
        ] })
    );

    // Roles: promoted alice may use the admin routes with the token she already has.
    let role = |name: &str, role: &str| {
        f.call(
            Method::PUT,
            format!("/auth/users/{name}/role"),
            Some(&admin),
            Some(json!({ "role": role })),
        )
    };
    let (status, body) = role("alice", "admin").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "username": "alice", "role": "admin" }));
    assert_eq!(f.whoami(Some(&alice)).await.1["role"], "admin");
    assert_eq!(
        f.call(Method::GET, "/auth/users", Some(&alice), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(role("alice", "user").await.0, StatusCode::OK);
    assert_eq!(
        f.call(Method::GET, "/auth/users", Some(&alice), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(role("nobody", "admin").await.0, StatusCode::NOT_FOUND);
    assert_eq!(role("alice", "superuser").await.0, StatusCode::BAD_REQUEST);
    let (status, body) = role(ADMIN, "user").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an admin demoted themself: {body}"
    );

    // Password reset: old tokens and the old password are void at once; the new password
    // works within the same second.
    let reset = |name: &str, password: &str| {
        f.call(
            Method::PUT,
            format!("/auth/users/{name}/password"),
            Some(&admin),
            Some(json!({ "password": password })),
        )
    };
    let (status, body) = reset("alice", "alice-new-password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "username": "alice" }));
    assert_eq!(f.whoami(Some(&alice)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(f.refresh(&alice).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.login("alice", "alice-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    let alice = f.token("alice", "alice-new-password").await;
    assert_eq!(f.whoami(Some(&alice)).await.0, StatusCode::OK);
    assert_eq!(
        reset("nobody", "some-password").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(reset("alice", "        ").await.0, StatusCode::BAD_REQUEST);

    // Deletion.
    let delete = |name: &str| {
        f.call(
            Method::DELETE,
            format!("/auth/users/{name}"),
            Some(&admin),
            None,
        )
    };
    let (status, body) = delete("alice").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(delete("alice").await.0, StatusCode::NOT_FOUND);
    assert_eq!(delete("a..b%2Fc").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(f.whoami(Some(&alice)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.login("alice", "alice-new-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = delete(ADMIN).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an admin deleted themself: {body}"
    );
    assert_error(&body);

    let (_, body) = list().await;
    assert_eq!(
        body,
        json!({ "users": [
            { "username": "bob", "role": "user" },
            { "username": ADMIN, "role": "admin" },
        ] })
    );
}

#[tokio::test]
async fn a_deleted_users_tokens_are_refused_also_after_the_name_is_registered_again() {
    let f = Fixture::new().await;
    let admin = f.admin_token().await;
    let old = f.user_token("bob", "bob-password").await;
    let (status, _) = f
        .call(Method::DELETE, "/auth/users/bob", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = f.whoami(Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);
    let (status, body) = f.refresh(&old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body);
    let (status, _) = f.call(Method::POST, "/auth/revoke", Some(&old), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.login("bob", "bob-password").await.0,
        StatusCode::UNAUTHORIZED
    );

    // A new bob is a new generation: the old bob's token stays refused.
    let new = f.user_token("bob", "bob-password-2").await;
    assert_ne!(claims(&new).gen, claims(&old).gen);
    assert_eq!(f.whoami(Some(&new)).await.0, StatusCode::OK);
    assert_eq!(f.whoami(Some(&old)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn non_admins_get_403_and_strangers_401_on_admin_routes() {
    let f = Fixture::new().await;
    let user = f.user_token("carol", "carol-password").await;
    let routes = [
        (Method::GET, "/auth/users", None),
        (
            Method::POST,
            "/auth/users",
            Some(json!({ "username": "x1", "password": "x1-password" })),
        ),
        (Method::DELETE, "/auth/users/root", None),
        (
            Method::PUT,
            "/auth/users/carol/role",
            Some(json!({ "role": "admin" })),
        ),
        (
            Method::PUT,
            "/auth/users/root/password",
            Some(json!({ "password": "taken-over!" })),
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = f
            .call(method.clone(), path, Some(&user), body.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_error(&answer);
        for token in [None, Some("garbage")] {
            let (status, answer) = f.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {answer}"
            );
            assert_error(&answer);
        }
    }
    // Nothing changed.
    assert_eq!(f.whoami(Some(&user)).await.1["role"], "user");
    // The admin can still log in with the old password.
    f.admin_token().await;
    assert_eq!(
        f.login("x1", "x1-password").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn refresh_issues_a_new_token_for_the_same_user() {
    let f = Fixture::new().await;
    let token = f.user_token("dora", "dora-password").await;
    let (status, body) = f.refresh(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], LIFETIME_SECS);
    assert_eq!(body["role"], "user");
    let fresh = body["token"].as_str().unwrap();
    let (old, new) = (claims(&token), claims(fresh));
    assert_eq!((new.sub.as_str(), new.gen), ("dora", old.gen));
    assert!(new.exp >= old.exp);
    let (status, body) = f.whoami(Some(fresh)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "username": "dora", "role": "user" }));
    assert_eq!(f.refresh("not-a-jwt").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoke_voids_every_token_of_the_caller_and_a_new_login_works_at_once() {
    let f = Fixture::new().await;
    let first = f.user_token("erin", "erin-password").await;
    let second = f.token("erin", "erin-password").await;
    let other = f.user_token("frank", "frank-password").await;

    let (status, body) = f
        .call(Method::POST, "/auth/revoke", Some(&first), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for token in [&first, &second] {
        assert_eq!(f.whoami(Some(token)).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(f.refresh(token).await.0, StatusCode::UNAUTHORIZED);
    }
    // Other users keep their tokens; erin logs in again within the same second.
    assert_eq!(f.whoami(Some(&other)).await.0, StatusCode::OK);
    let again = f.token("erin", "erin-password").await;
    assert_eq!(f.whoami(Some(&again)).await.0, StatusCode::OK);
    let (status, body) = f.refresh(&again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.whoami(body["token"].as_str()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_zookeeper_outage_answers_503_and_leaves_no_half_created_user() {
    let mut f = Fixture::new().await;
    let token = f.user_token("gina", "gina-password").await;
    f.zookeeper.kill();

    let (status, body) = f.register("henry", "henry-password").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error(&body);
    let (status, body) = f.whoami(Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // The password check itself is local, but no token is issued without the record.
    let (status, _) = f.login("gina", "gina-password").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = read(f.http.get(f.auth.url("/health")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    f.zookeeper.restart();
    // The service reconnects by itself; henry's row was removed, so the name is free.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = f.register("henry", "henry-password").await;
        if status == StatusCode::CREATED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            Instant::now() < deadline,
            "no reconnect:\n{}",
            f.auth.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(f.login("henry", "henry-password").await.0, StatusCode::OK);
    assert_eq!(f.whoami(Some(&token)).await.0, StatusCode::OK);
}
