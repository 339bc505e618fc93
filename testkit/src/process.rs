use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, for a service to bind next.
///
/// Taken below Linux's ephemeral range (32768+), so that no outgoing connection can grab it
/// between this check and the service's bind; a counter keeps this process's picks apart.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = std::process::id().wrapping_mul(7_919);
    for _ in 0..SPAN {
        let pick = offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = (FIRST + pick) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

/// Path of a workspace binary built next to the running executable (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let mut dir = exe.parent().expect("executable directory");
    // Test executables live one level down, in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target profile directory");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Polls `condition` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        poll_until(timeout, condition).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `condition` until it holds (true) or `timeout` passes (false).
pub async fn poll_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running process; SIGKILLed on drop.
pub struct Service {
    name: String,
    child: Option<Child>,
    command: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Service {
    /// Starts `program args…`, appending its output to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[&str], log: &Path) -> Service {
        let mut service = Service {
            name: name.to_owned(),
            child: None,
            command: program.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log: log.to_owned(),
        };
        service.start();
        service
    }

    /// Starts the process again with the same command line (after `kill`).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.command)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.command.display()));
        self.child = Some(child);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays, frozen (a long GC pause, a stopped VM), until
    /// [`Service::resume`].
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Service::pause`].
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let sent = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(sent, "cannot send {signal} to {}", self.name);
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) -> bool {
    wait_for_addr(std::net::Ipv4Addr::LOCALHOST, port, timeout)
}

pub(crate) fn wait_for_addr(host: std::net::Ipv4Addr, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
