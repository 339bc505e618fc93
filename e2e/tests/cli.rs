//! The `mom` command line tool against a real cluster.

use mom_e2e::{PASSWORD, USER};
use mom_testkit::{binary, Cluster};
use std::process::Command;

/// `mom` with the cluster's URL and the test user's credentials.
fn mom_command(cluster: &Cluster) -> Command {
    let mut command = Command::new(binary("mom"));
    command.args([
        "--url",
        cluster.gateway_url(),
        "--user",
        USER,
        "--password",
        PASSWORD,
    ]);
    command
}

fn mom(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let output = mom_command(cluster).args(args).output().expect("mom runs");
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

    // Headers and a content type go with the message; --json shows them.
    let args = [
        "publish",
        "greetings",
        "en",
        "with headers",
        "--header",
        "trace-id=t-1",
        "--header",
        "lang=en",
        "--content-type",
        "text/plain",
    ];
    let (ok, stdout, stderr) = mom(&cluster, &args);
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = mom(
        &cluster,
        &["--json", "consume", "hello", "--wait-secs", "5"],
    );
    assert!(ok, "{stderr}");
    let delivery: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (
            &delivery["payload"],
            &delivery["headers"],
            &delivery["content_type"]
        ),
        (
            &serde_json::json!("with headers"),
            &serde_json::json!({"trace-id": "t-1", "lang": "en"}),
            &serde_json::json!("text/plain")
        ),
        "{stdout}"
    );

    // --stream: the gateway pushes the messages (its gRPC stream; --sse: Server-Sent Events);
    // acked as they print.
    for transport in [None, Some("--sse")] {
        for payload in ["pushed one", "pushed two"] {
            let (ok, stdout, stderr) = mom(&cluster, &["publish", "greetings", "en", payload]);
            assert!(ok, "{stdout}{stderr}");
        }
        let mut args = vec![
            "consume",
            "hello",
            "--stream",
            "--count",
            "2",
            "--wait-secs",
            "5",
        ];
        args.extend(transport);
        let (ok, stdout, stderr) = mom(&cluster, &args);
        assert!(ok, "{transport:?}: {stderr}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["pushed one", "pushed two"],
            "{transport:?}"
        );
        let (ok, stdout, _) = mom(&cluster, &["depth", "hello"]);
        assert!(ok && stdout.contains("ready 0 leased 0"), "acked: {stdout}");
    }
    let (ok, _, stderr) = mom(
        &cluster,
        &["publish", "greetings", "en", "x", "--header", "bad"],
    );
    assert!(!ok && stderr.contains("NAME=VALUE"), "{stderr}");

    // Nothing left: consume says so and fails.
    let (ok, _, stderr) = mom(&cluster, &["consume", "hello", "--wait-secs", "1"]);
    assert!(!ok && !stderr.is_empty());

    let (ok, _, stderr) = mom(&cluster, &["consume", "no-such-queue", "--wait-secs", "1"]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn cli_lists_follows_publishes_files_grants_and_completes() {
    let cluster = Cluster::start().await;
    for args in [
        vec!["register"],
        vec!["declare-exchange", "jobs", "--kind", "direct"],
        vec!["declare-queue", "work"],
        vec!["bind", "jobs", "work", "run"],
    ] {
        let (ok, stdout, stderr) = mom(&cluster, &args);
        assert!(ok, "mom {args:?} failed: {stdout}{stderr}");
    }
    // A file of messages, one per line, in batches.
    let file = cluster.dir().join("messages.txt");
    let lines: Vec<String> = (0..250).map(|n| format!("job {n}")).collect();
    std::fs::write(&file, lines.join("\n") + "\n\n").unwrap();
    let (ok, stdout, stderr) = mom(
        &cluster,
        &["publish", "jobs", "run", "--file", file.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("published 250 message(s)"), "{stdout}");

    // Lists, as text and as JSON.
    let (ok, stdout, _) = mom(&cluster, &["list", "queues"]);
    assert!(ok && stdout.trim() == "work", "{stdout}");
    let (ok, stdout, _) = mom(&cluster, &["list", "bindings", "jobs", "--json"]);
    let bindings: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(ok && bindings[0]["queue"] == "work", "{stdout}");
    let (ok, stdout, _) = mom(&cluster, &["list", "nodes"]);
    assert!(
        ok && stdout.lines().filter(|l| l.ends_with("live")).count() == 3,
        "{stdout}"
    );
    let (ok, stdout, _) = mom(&cluster, &["list", "partitions", "--json"]);
    let partitions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        ok && partitions.as_array().is_some_and(|p| !p.is_empty()),
        "{stdout}"
    );

    // Consume as JSON lines.
    let (ok, stdout, stderr) = mom(&cluster, &["consume", "work", "--count", "250", "--json"]);
    assert!(ok, "{stderr}");
    let payloads: std::collections::HashSet<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(payloads.len(), 250);

    // --follow keeps printing until interrupted.
    let mut follower = mom_command(&cluster)
        .args(["consume", "work", "--follow", "--wait-secs", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for n in 0..3 {
        let (ok, _, stderr) = mom(&cluster, &["publish", "jobs", "run", &format!("late {n}")]);
        assert!(ok, "{stderr}");
    }
    let stdout = follower.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        got.push(line.trim().to_owned());
    }
    got.sort();
    assert_eq!(got, vec!["late 0", "late 1", "late 2"]);
    // Ctrl-C ends it cleanly.
    Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(follower.wait().unwrap().success());

    // Grants and the admin-only listing.
    mom_client::Connection::register(cluster.gateway_url(), "bob", PASSWORD)
        .await
        .unwrap();
    let (ok, stdout, stderr) = mom(&cluster, &["grant", "bob", "queue", "work", "read"]);
    assert!(ok && stdout.contains("granted as g-"), "{stdout}{stderr}");
    let (ok, stdout, _) = mom(&cluster, &["list", "permissions"]);
    assert!(ok && stdout.contains("bob\tqueue work\tread"), "{stdout}");
    let (ok, _, stderr) = mom(&cluster, &["list", "users"]);
    assert!(!ok && stderr.contains("403"), "{stderr}");

    let (ok, stdout, _) = mom(&cluster, &["completions", "bash"]);
    assert!(ok && stdout.contains("complete") && stdout.contains("mom"));
}
