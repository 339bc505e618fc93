//! The benchmark's output: one line per row and run as it goes, then the final table of medians
//! over the runs with the MOM/RabbitMQ ratio of every row, as a Markdown table (plain text that
//! reads in a terminal and pastes into a README).

use super::load::RowResult;
use std::time::Duration;

/// Medians of one row on one broker over the runs.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub per_sec: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub cpu_per_msg: Option<f64>,
    pub messages: f64,
    /// Summed over the runs, not a median.
    pub failed: usize,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

pub fn summarize(rows: &[&RowResult]) -> Option<Summary> {
    if rows.is_empty() {
        return None;
    }
    let of =
        |f: &dyn Fn(&RowResult) -> Option<f64>| median(rows.iter().filter_map(|r| f(r)).collect());
    Some(Summary {
        per_sec: of(&|r| Some(r.per_sec())).unwrap_or(0.0),
        p50: of(&|r| secs(r.p50())),
        p99: of(&|r| secs(r.p99())),
        cpu_per_msg: of(&|r| secs(r.cpu_per_msg())),
        messages: of(&|r| Some(r.messages as f64)).unwrap_or(0.0),
        failed: rows.iter().map(|r| r.failed).sum(),
    })
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(s) if s * 1e3 >= 100.0 => format!("{:.0} ms", s * 1e3),
        Some(s) if s * 1e3 >= 10.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{:.2} ms", s * 1e3),
        None => "-".into(),
    }
}

fn us(v: Option<f64>) -> String {
    match v {
        Some(s) if s * 1e6 >= 10.0 => format!("{:.0} µs", s * 1e6),
        Some(s) => format!("{:.1} µs", s * 1e6),
        None => "-".into(),
    }
}

fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("x{:.2}", a / b),
        _ => "-".into(),
    }
}

/// One progress line for a row of one run.
pub fn line(broker: &str, run: usize, row: &str, r: &RowResult) -> String {
    let mut text = format!(
        "run {run} {broker:<8} {row:<26} {:>8} msg/s  p50 {:>8}  p99 {:>8}  CPU {:>8}/msg (client {})  {} msgs in {:.1} s, {} failed",
        rate(r.per_sec()),
        ms(secs(r.p50())),
        ms(secs(r.p99())),
        us(secs(r.cpu_per_msg())),
        us(secs(r.client_cpu_per_msg())),
        r.messages,
        r.elapsed.as_secs_f64(),
        r.failed
    );
    for note in &r.notes {
        text.push_str(&format!("\n      note: {note}"));
    }
    text
}

/// The final table: for every row, MOM, RabbitMQ and their ratio.
pub fn table(rows: &[(&str, Option<Summary>, Option<Summary>)]) -> String {
    let header = [
        "row", "broker", "msg/s", "p50", "p99", "CPU/msg", "msgs", "failed",
    ];
    let mut cells: Vec<[String; 8]> = Vec::new();
    for (name, mom, rabbit) in rows {
        for (i, (broker, s)) in [("MOM", mom), ("RabbitMQ", rabbit)].into_iter().enumerate() {
            let row = if i == 0 {
                name.to_string()
            } else {
                String::new()
            };
            cells.push(match s {
                Some(s) => [
                    row,
                    broker.into(),
                    rate(s.per_sec),
                    ms(s.p50),
                    ms(s.p99),
                    us(s.cpu_per_msg),
                    format!("{:.0}", s.messages),
                    s.failed.to_string(),
                ],
                None => [
                    row,
                    broker.into(),
                    "not run".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            });
        }
        let (m, r) = (mom.as_ref(), rabbit.as_ref());
        cells.push([
            String::new(),
            "MOM/RabbitMQ".into(),
            ratio(m.map(|s| s.per_sec), r.map(|s| s.per_sec)),
            ratio(m.and_then(|s| s.p50), r.and_then(|s| s.p50)),
            ratio(m.and_then(|s| s.p99), r.and_then(|s| s.p99)),
            ratio(m.and_then(|s| s.cpu_per_msg), r.and_then(|s| s.cpu_per_msg)),
            String::new(),
            String::new(),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |row: &[String]| {
        let mut line = String::from("|");
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Names left-aligned, figures right-aligned.
            if i < 2 {
                line.push_str(&format!(" {cell:<w$} |"));
            } else {
                line.push_str(&format!(" {cell:>w$} |"));
            }
        }
        line
    };
    let mut out = render(&header.map(String::from));
    out.push('\n');
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(*w);
        if i < 2 {
            out.push_str(&format!("-{dashes}-|"));
        } else {
            out.push_str(&format!("-{dashes}:|"));
        }
    }
    for row in &cells {
        out.push('\n');
        out.push_str(&render(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
