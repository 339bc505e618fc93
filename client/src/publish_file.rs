//! `mom publish <exchange> <key> --file <path|->`: every line of a file (or of standard input)
//! is one message, sent in batches of up to 100 (`publish_batch`), with a progress line on
//! standard error. Empty lines are skipped. Messages that could not be stored are reported by
//! their number (the n-th message of the file), and the command fails if there were any.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mom_client::Connection;
use std::io::BufRead;
use std::path::Path;

const BATCH: usize = 100;

fn lines(file: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if file.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    Ok(Box::new(std::io::BufReader::new(opened)))
}

pub async fn run(
    conn: &Connection,
    exchange: &str,
    routing_key: &str,
    file: &Path,
) -> anyhow::Result<()> {
    // The total is known for a regular file only (by size); stdin shows a spinner and counts.
    let progress = match std::fs::metadata(file) {
        Ok(meta) if meta.is_file() => {
            ProgressBar::new(meta.len()).with_style(ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} · {msg} · {elapsed} (eta {eta})",
            )?)
        }
        _ => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} {msg} · {elapsed}")?),
    };
    let mut published = 0usize;
    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let mut sent = 0;
    let mut reader = lines(file)?;
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read > 0 {
            progress.inc(read as u64);
            let text = line.trim_end_matches(['\n', '\r']);
            if !text.is_empty() {
                batch.push(text.to_owned());
            }
        }
        if batch.len() == BATCH || (read == 0 && !batch.is_empty()) {
            let outcomes = conn
                .publish_batch(exchange, batch.iter().map(|p| (routing_key, p.as_str())))
                .await?;
            for (offset, outcome) in outcomes.into_iter().enumerate() {
                match outcome {
                    Ok(_) => published += 1,
                    Err(e) => failed.push((sent + offset + 1, e)),
                }
            }
            sent += batch.len();
            batch.clear();
            progress.set_message(format!("{published} published"));
        }
        if read == 0 {
            break;
        }
    }
    progress.finish_and_clear();
    for (number, error) in &failed {
        eprintln!("message {number}: not stored: {error}");
    }
    println!("published {published} message(s) to {exchange}");
    if !failed.is_empty() {
        anyhow::bail!("{} message(s) were not stored", failed.len());
    }
    Ok(())
}
