//! A throw-away ZooKeeper server (Debian's `zookeeper` package) on a free port, on loopback
//! or on a test network's ZooKeeper address.

use crate::process::{free_port, Service};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

pub struct ZooKeeper {
    host: Ipv4Addr,
    port: u16,
    server: Service,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        ZooKeeper::start_on(Ipv4Addr::LOCALHOST)
    }

    /// A server listening on `host` only.
    pub fn start_on(host: Ipv4Addr) -> ZooKeeper {
        assert!(
            Path::new(ZOOKEEPER_JAR).exists(),
            "{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package (scripts/install-deps.sh)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress={host}\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n\
                 minSessionTimeout=400\nmaxSessionTimeout=30000\n",
                dir.path().join("data").display()
            ),
        )
        .expect("zoo.cfg");
        let config = config.to_string_lossy().into_owned();
        let server = Service::spawn(
            "zookeeper",
            Path::new("java"),
            &[
                "-Xmx128m",
                "-cp",
                ZOOKEEPER_JAR,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                &config,
            ],
            &dir.path().join("zookeeper.log"),
        );
        let mut zookeeper = ZooKeeper {
            host,
            port,
            server,
            _dir: dir,
        };
        zookeeper.wait_serving();
        zookeeper
    }

    pub fn connect_string(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// SIGKILL; data in the data dir survives for `restart`.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    pub fn restart(&mut self) {
        self.server.start();
        self.wait_serving();
    }

    /// `ruok` answers before the server serves; `srvr` reporting a mode means it does.
    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.srvr().is_some_and(|reply| reply.contains("Mode:")) {
                return;
            }
            assert!(
                self.server.is_running(),
                "zookeeper exited:\n{}",
                self.server.log()
            );
            assert!(
                Instant::now() < deadline,
                "zookeeper not serving:\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn srvr(&self) -> Option<String> {
        let mut stream = TcpStream::connect((self.host, self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(b"srvr").ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        Some(reply)
    }
}
