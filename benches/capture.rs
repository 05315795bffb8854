//! What consentry costs the app, each figure beside its baseline in the same run:
//! `capture_error` before `init`, when off and when on (the caller's thread only) against
//! sentry's `capture_error`; `track` off and on; `init` off and on; and the panic hook from
//! the panic to the report stored in the outbox.
//!
//! `cargo bench -p consentry --bench capture`; figures in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consentry::{Config, Scope};
use criterion::{Criterion, criterion_group, criterion_main};

#[derive(Debug)]
struct ChainError(u8);

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} failed reading /home/bench/data.csv", self.0)
    }
}

impl std::error::Error for ChainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        static INNER: ChainError = ChainError(2);
        static ROOT: ChainError = ChainError(3);
        match self.0 {
            1 => Some(&INNER),
            2 => Some(&ROOT),
            _ => None,
        }
    }
}

static ERR: ChainError = ChainError(1);

struct NoopTransport;

impl sentry::Transport for NoopTransport {
    fn send_envelope(&self, envelope: sentry::Envelope) {
        black_box(envelope);
    }
}

/// A sentry hub with a client whose transport does nothing: sentry's own cost of a capture.
fn sentry_hub() -> sentry::Hub {
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some("https://key@127.0.0.1/1".parse().unwrap());
    options.transport = Some(Arc::new(Arc::new(NoopTransport)));
    options.default_integrations = false;
    let client = sentry::Client::from(options);
    sentry::Hub::new(Some(Arc::new(client)), Arc::new(sentry::Scope::default()))
}

fn config(dir: &std::path::Path, name: &str) -> Config {
    Config::new(name, "1.0.0")
        .config_dir(dir.join(name).join("config"))
        .data_dir(dir.join(name).join("data"))
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    // Quiet panics for the panic-hook bench: consentry chains this hook.
    std::panic::set_hook(Box::new(|_| {}));

    let mut g = c.benchmark_group("capture_error, reporting off");
    g.bench_function("consentry before init", |b| {
        b.iter(|| {
            consentry::capture_error(black_box(&ERR));
        })
    });
    g.bench_function("sentry, no client bound", |b| {
        b.iter(|| {
            sentry::capture_error(black_box(&ERR));
        })
    });
    let off = consentry::init(config(dir.path(), "off"));
    assert!(consentry::current_decision().is_off());
    g.bench_function("consentry after init, consent not given", |b| {
        b.iter(|| {
            consentry::capture_error(black_box(&ERR));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("track, usage off");
    g.bench_function("consentry::track", |b| {
        b.iter(|| consentry::track(black_box("train"), [("task", "detect")]))
    });
    g.finish();
    drop(off);

    let mut g = c.benchmark_group("init");
    let off_cfg = config(dir.path(), "init-off");
    g.bench_function("consent not given (reads settings, decides)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let guard = consentry::init(off_cfg.clone());
                total += start.elapsed();
                drop(guard);
            }
            total
        })
    });
    let on_cfg = config(dir.path(), "init-on");
    consentry::enable(&on_cfg, Scope::All).unwrap();
    g.bench_function("consent given (worker thread, panic hook)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let guard = consentry::init(on_cfg.clone());
                total += start.elapsed();
                drop(guard);
            }
            total
        })
    });
    g.finish();

    // Reporting on: the caller's thread builds the event and queues it; the worker scrubs
    // and stores it. sentry's client runs its whole pipeline on the caller's thread.
    let hub = sentry_hub();
    let mut g = c.benchmark_group("capture_error, reporting on (caller's thread)");
    for (name, backtrace) in [
        ("consentry, with backtrace", true),
        ("consentry, no backtrace", false),
    ] {
        let cfg = config(dir.path(), if backtrace { "on-bt" } else { "on-nobt" })
            .attach_backtrace(backtrace)
            .outbox_limits(20, 1 << 20);
        consentry::enable(&cfg, Scope::All).unwrap();
        let guard = consentry::init(cfg);
        assert!(consentry::current_decision().crash);
        g.bench_function(name, |b| {
            b.iter(|| {
                consentry::capture_error(black_box(&ERR));
            })
        });
        drop(guard);
    }
    g.bench_function("sentry, no-op transport", |b| {
        b.iter(|| {
            hub.capture_error(black_box(&ERR));
        })
    });
    g.finish();

    let mut g = c.benchmark_group("track, usage on");
    let cfg = config(dir.path(), "track-on")
        .usage_sink(consentry::Sink::json("http://127.0.0.1:9/usage"))
        .usage_interval(Duration::from_secs(3600));
    consentry::enable(&cfg, Scope::All).unwrap();
    let guard = consentry::init(cfg);
    g.bench_function("consentry::track, 2 props", |b| {
        b.iter(|| {
            consentry::track(
                black_box("train"),
                [("task", "detect"), ("model", "yolov8n")],
            )
        })
    });
    drop(guard);
    g.finish();

    let mut g = c.benchmark_group("panic hook");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    let cfg = config(dir.path(), "panic").outbox_limits(20, 1 << 20);
    consentry::enable(&cfg, Scope::All).unwrap();
    let guard = consentry::init(cfg.clone());
    let outbox = dir.path().join("panic/data/outbox");
    let mut ran = false;
    g.bench_function(
        "panic to report stored in the outbox (incl. symbolication, no DSN)",
        |b| {
            ran = true;
            b.iter(|| {
                let _ = std::panic::catch_unwind(|| panic!("bench panic in /home/bench/x.rs"));
            })
        },
    );
    drop(guard);
    // Only when this bench ran: a filtered run (`cargo bench -- "reporting on"`) skips it.
    if ran {
        assert!(
            std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0) > 0,
            "reports were stored"
        );
    }
    g.finish();
}

criterion_group! {
    name = capture;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(capture);
