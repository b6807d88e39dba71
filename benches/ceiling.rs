//! The ceiling: a plain loop that parses each JSON line with serde_json into a typed struct
//! and counts users per one-minute window and gender, over the same files as the end-to-end
//! benchmark, one thread per file group. Weir's throughput is reported as a ratio to this.
//!
//! `cargo bench --bench ceiling -- DIR THREADS`

use std::collections::HashMap;
use std::io::BufRead;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct User<'a> {
    id: &'a str,
    gender: &'a str,
    nat: &'a str,
    created_at: &'a str,
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let (Some(dir), Some(threads)) = (
        args.get(1),
        args.get(2).and_then(|t| t.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: cargo bench --bench ceiling -- DIR THREADS");
        std::process::exit(2);
    };
    // The same files, in the same order, as Weir's file source reads.
    let files = weir::source::file::partition_files(std::path::Path::new(dir))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<_> = files.iter().skip(t).step_by(threads).cloned().collect();
                s.spawn(move || {
                    let (mut lines, mut bytes) = (0u64, 0u64);
                    let mut counts: HashMap<(i64, String), u64> = HashMap::new();
                    for file in mine {
                        let reader = std::io::BufReader::with_capacity(
                            1 << 16,
                            std::fs::File::open(file).expect("open"),
                        );
                        for line in reader.split(b'\n') {
                            let line = line.expect("read");
                            lines += 1;
                            bytes += line.len() as u64 + 1;
                            if let Ok(user) = serde_json::from_slice::<User>(&line) {
                                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(user.created_at)
                                {
                                    *counts
                                        .entry((
                                            t.timestamp_millis() / 60_000,
                                            user.gender.to_string(),
                                        ))
                                        .or_default() += 1;
                                }
                            }
                        }
                    }
                    std::hint::black_box(counts);
                    (lines, bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let (lines, bytes) = totals
        .iter()
        .fold((0, 0), |(l, b), (l2, b2)| (l + l2, b + b2));
    println!("ceiling threads={threads} lines={lines} seconds={seconds:.3} records_per_s={:.0} mb_per_s={:.1}", lines as f64 / seconds, bytes as f64 / seconds / 1e6);
}
