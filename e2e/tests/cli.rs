//! The `mom` command line tool against a real cluster.

use mom_e2e::{PASSWORD, USER};
use mom_testkit::{binary, Cluster};
use std::process::Command;

fn mom(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("mom"))
        .args([
            "--url",
            cluster.gateway_url(),
            "--user",
            USER,
            "--password",
            PASSWORD,
        ])
        .args(args)
        .output()
        .expect("mom runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_publishes_and_consumes() {
    let cluster = Cluster::start().await;
    for args in [
        vec!["register"],
        vec!["declare-exchange", "greetings", "--kind", "direct"],
        vec!["declare-queue", "hello"],
        vec!["bind", "greetings", "hello", "en"],
        vec!["publish", "greetings", "en", "hello world"],
    ] {
        let (ok, stdout, stderr) = mom(&cluster, &args);
        assert!(ok, "mom {args:?} failed: {stdout}{stderr}");
    }
    let (ok, stdout, stderr) = mom(&cluster, &["consume", "hello", "--wait-secs", "5"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "hello world");

    // Nothing left: consume says so and fails.
    let (ok, _, stderr) = mom(&cluster, &["consume", "hello", "--wait-secs", "1"]);
    assert!(!ok && !stderr.is_empty());

    let (ok, _, stderr) = mom(&cluster, &["consume", "no-such-queue", "--wait-secs", "1"]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}
