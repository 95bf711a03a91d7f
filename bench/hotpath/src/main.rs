//! The filter's hot path, timed by the same code natively and inside a WebAssembly engine
//! (built for wasm32-wasip1, run by `run-wasi.mjs` under Node's WASI: V8, the engine of
//! Envoy's release build). `make bench-hotpath` runs both and the report divides them.
//!
//! Prints one JSON object: median ns per operation for each case, allocations per
//! cache-hit response, and the heap that one cache entry holds.

mod lean;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mtls_guard::filter::{configure, Flow, Instance, StreamState, Worker};
use mtls_guard::policy::{evaluate, Presented};
use mtls_guard::{cert, config, dn};
use serde_json::{json, Map, Value};

use lean::{full_policy, LeanHost};

const EC256: &[u8] = include_bytes!("../../../tests/fixtures/ec256_spiffe.pem");
const RSA2048: &[u8] = include_bytes!("../../../tests/fixtures/rsa2048.pem");
/// Inside the fixtures' validity (2026-01-01 .. 2028-01-01).
const AT: i64 = 1_800_000_000;
const SUBJECT: &str = "CN=orders,O=Example Corp,C=US";

/// Counts allocations and live heap bytes (cheap relaxed atomics; single-threaded).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Relaxed);
        LIVE.fetch_add(layout.size() as i64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(new_size as u64, Relaxed);
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Median ns/op over `SAMPLES` batches of about `BATCH` each, after a warm-up long enough
/// for the engine's optimising tier to take over.
fn measure(mut f: impl FnMut()) -> f64 {
    const BATCH: Duration = Duration::from_millis(25);
    const WARMUP: Duration = Duration::from_millis(300);
    const SAMPLES: usize = 21;
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= BATCH / 4 || iters >= 1 << 30 {
            let per = t.elapsed().as_nanos().max(1) as f64 / iters as f64;
            iters = ((BATCH.as_nanos() as f64 / per) as u64).max(1);
            break;
        }
        iters *= 2;
    }
    let start = Instant::now();
    while start.elapsed() < WARMUP {
        for _ in 0..iters {
            f();
        }
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[SAMPLES / 2]
}

/// (allocations, bytes allocated) per call of `f`, over `n` calls.
fn allocations(n: u64, mut f: impl FnMut()) -> (f64, f64) {
    let (a0, b0) = (ALLOCS.load(Relaxed), ALLOC_BYTES.load(Relaxed));
    for _ in 0..n {
        f();
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), ALLOC_BYTES.load(Relaxed));
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

/// One response through the filter: a new stream (request phase skipped: no canary in the
/// bench policy), then its response-headers callback.
fn respond(inst: &mut Instance, host: &LeanHost, worker: &mut Worker) -> Flow {
    let mut stream = StreamState::default();
    inst.on_response_headers(host, worker, &mut stream).0
}

fn main() {
    let target = if cfg!(target_family = "wasm") {
        "wasm32-wasip1"
    } else {
        "native"
    };
    let facts = cert::parse(EC256).expect("fixture parses");
    let pin = facts.spki_pin();
    let digest = facts.sha256_hex();

    let mut ns = Map::new();
    let mut put = |k: &str, v: f64| {
        ns.insert(k.to_string(), json!((v * 10.0).round() / 10.0));
    };

    // Cold parse: PEM text to the facts the policy needs (what a cache miss costs).
    put(
        "parse_pem_ec256",
        measure(|| {
            black_box(cert::parse(black_box(EC256)).ok());
        }),
    );
    put(
        "parse_pem_rsa2048",
        measure(|| {
            black_box(cert::parse(black_box(RSA2048)).ok());
        }),
    );

    // Policy evaluation alone, on already-parsed facts.
    let (cfg, _) =
        config::parse(full_policy(&pin, SUBJECT, 256).as_bytes(), AT).expect("policy valid");
    assert!(
        evaluate(&cfg.default, Presented::Cert(&facts), AT).passed(),
        "the bench policy must pass the fixture"
    );
    put(
        "evaluate_full_policy",
        measure(|| {
            black_box(evaluate(
                black_box(&cfg.default),
                Presented::Cert(black_box(&facts)),
                AT,
            ));
        }),
    );

    let (eval_allocs, _) = allocations(1000, || {
        black_box(evaluate(
            black_box(&cfg.default),
            Presented::Cert(black_box(&facts)),
            AT,
        ));
    });

    // DN normalisation: parse an RFC 4514 string, render it canonically, compare.
    let configured = dn::parse("cn = orders ,  o=Example Corp,C=us").expect("dn");
    put(
        "dn_parse_render",
        measure(|| {
            let d = dn::parse(black_box("commonName=orders, O=Example Corp, C=US")).ok();
            black_box(d.map(|d| d.render()));
        }),
    );
    put(
        "dn_match",
        measure(|| {
            black_box(configured.matches(black_box(&facts.subject)));
        }),
    );

    // The filter's response-headers callback, warm cache: what variant 4 runs per request.
    let host = LeanHost::new(AT, &full_policy(&pin, SUBJECT, 256), EC256, &digest);
    let mut inst = configure(&host).expect("config accepted");
    let mut worker = Worker::default();
    let flow = respond(&mut inst, &host, &mut worker);
    assert!(flow == Flow::Continue, "the bench policy must pass");
    assert!(host.header_writes.get() >= 7, "identity headers stamped");
    put(
        "filter_cache_hit",
        measure(|| {
            black_box(respond(&mut inst, &host, &mut worker));
        }),
    );
    let (hit_allocs, hit_bytes) = allocations(1000, || {
        black_box(respond(&mut inst, &host, &mut worker));
    });

    // Cache disabled: parse on every response (variant 5).
    let host0 = LeanHost::new(AT, &full_policy(&pin, SUBJECT, 0), EC256, &digest);
    let mut inst0 = configure(&host0).expect("config accepted");
    let mut worker0 = Worker::default();
    put(
        "filter_cache_off",
        measure(|| {
            black_box(respond(&mut inst0, &host0, &mut worker0));
        }),
    );
    let (miss_allocs, miss_bytes) = allocations(200, || {
        black_box(respond(&mut inst0, &host0, &mut worker0));
    });

    // Heap held per cache entry: 1,000 distinct cache keys (digests) into a cache of
    // 1,024, same certificate; live heap before and after.
    let host_m = LeanHost::new(AT, &full_policy(&pin, SUBJECT, 1024), EC256, &digest);
    let mut inst_m = configure(&host_m).expect("config accepted");
    let mut worker_m = Worker::default();
    black_box(respond(&mut inst_m, &host_m, &mut worker_m));
    let entries = 1000u32;
    let live0 = LIVE.load(Relaxed);
    for i in 1..=entries {
        host_m.set_digest(format!("{i:064x}").as_bytes());
        black_box(respond(&mut inst_m, &host_m, &mut worker_m));
    }
    let live1 = LIVE.load(Relaxed);
    let per_entry = (live1 - live0) as f64 / f64::from(entries);

    let out = json!({
        "target": target,
        "ns_per_op": Value::Object(ns),
        "cache_hit_allocations_per_response": hit_allocs,
        "evaluate_allocations_per_call": eval_allocs,
        "cache_hit_bytes_allocated_per_response": hit_bytes,
        "cache_off_allocations_per_response": miss_allocs,
        "cache_off_bytes_allocated_per_response": miss_bytes,
        "cache_entry_heap_bytes": per_entry.round(),
        "cache_entries_measured": entries,
    });
    println!("{out}");
}
