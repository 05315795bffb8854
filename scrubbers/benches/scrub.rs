//! Throughput of scrubbing realistic crash events with every builtin rule on, one thread,
//! and the time to build a scrubber.
//!
//! `cargo bench -p consentry-scrubbers --bench scrub`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

/// Events per batch: large enough that per-iteration overhead vanishes.
const EVENTS: usize = 200;

fn corpus() -> (Vec<Value>, u64) {
    let events = corpus::realistic_corpus(EVENTS, 42);
    let bytes: usize = events
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len()))
        .sum();
    (events, bytes as u64)
}

fn scrub_events(c: &mut Criterion) {
    let scrubber = corpus::builder().build().unwrap();
    let (events, bytes) = corpus();
    let mut group = c.benchmark_group("scrub_value");
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("realistic_corpus_bytes", |b| {
        b.iter_batched(
            || events.clone(),
            |mut events| {
                for event in &mut events {
                    black_box(scrubber.scrub_value(event).unwrap());
                }
                events
            },
            BatchSize::LargeInput,
        );
    });
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("realistic_corpus_events", |b| {
        b.iter_batched(
            || events.clone(),
            |mut events| {
                for event in &mut events {
                    black_box(scrubber.scrub_value(event).unwrap());
                }
                events
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();

    let texts: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let mut group = c.benchmark_group("scrub_text");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("realistic_corpus_as_json_lines", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(scrubber.scrub_text(text).unwrap());
            }
        });
    });
    group.finish();
}

fn build(c: &mut Criterion) {
    // The builtin rules compile once per process, on the first build; report that one apart.
    let start = std::time::Instant::now();
    black_box(corpus::builder().build().unwrap());
    eprintln!(
        "first build (compiles the builtin rules): {:?}",
        start.elapsed()
    );
    c.bench_function("build/identities_env_salt", |b| {
        b.iter(|| black_box(corpus::builder().build().unwrap()));
    });
    c.bench_function("build/full_environment", |b| {
        let env: Vec<(String, String)> = std::env::vars().collect();
        b.iter(|| black_box(corpus::builder().env_vars(env.clone()).build().unwrap()));
    });
}

criterion_group!(benches, build, scrub_events);
criterion_main!(benches);
