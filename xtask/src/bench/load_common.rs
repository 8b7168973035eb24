//! Pieces shared by the load benchmarks (`bench direct`, and `bench node` /
//! `bench gateway` as they land): running in release, starting release
//! binaries and waiting for their port, measuring a load with the CPU each
//! process used, printing the table and writing the docs/design.md §13 figures.
//!
//! A load benchmark reads like this:
//!
//! ```ignore
//! if load_common::reexec_in_release("node", args, &["ndxp-node", "ndxp-examples"])? {
//!     return Ok(());
//! }
//! let backend = load_common::spawn_release_bin("citizen-registry", &[...], addr, "/healthz", &log)?;
//! let direct = load_common::measure(&spec, &[backend.cpu_probe()], None)?;
//! load_common::print_table(&[("direct", &direct)]);
//! load_common::write_load_json("node", Some(&platform), &direct, connections, extra)?;
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ndxp_core::table::Table;
use serde_json::{json, Map, Value};

use crate::demo;
use crate::loadgen::{self, LoadResult, LoadSpec};
use crate::util::{cargo, root, run_step};

/// `/proc/PID/stat` counts CPU time in clock ticks of 1/100 s on Linux
/// (`USER_HZ`, fixed by the kernel ABI).
const USER_HZ: f64 = 100.0;

/// Where the release binaries are.
pub(crate) fn release_dir() -> PathBuf {
    root().join("target/release")
}

/// Load benchmarks measure release builds only. When this xtask is a debug
/// build, builds `packages` and xtask itself in release (one cargo
/// invocation, so features unify and nothing is built twice), runs
/// `target/release/xtask bench NAME ARGS...` and returns `true`: the
/// caller returns at once. In the release xtask it returns `false`.
///
/// # Errors
/// When the build fails or the release run fails.
pub(crate) fn reexec_in_release(name: &str, args: &[String], packages: &[&str]) -> Result<bool> {
    if !cfg!(debug_assertions) {
        return Ok(false);
    }
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "xtask"]);
    for p in packages {
        build.args(["-p", p]);
    }
    run_step("release build", &mut build)?;
    let xtask = release_dir().join("xtask");
    let mut run = Command::new(&xtask);
    run.current_dir(root()).arg("bench").arg(name).args(args);
    run_step(&format!("bench {name} (release)"), &mut run)?;
    Ok(true)
}

/// A free loopback TCP port (bound then released: another process could
/// take it in between, which a benchmark on a quiet machine accepts).
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A benchmark's child process; killed when dropped.
pub(crate) struct BenchProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl BenchProcess {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A CPU probe for [`measure`], named after the process.
    pub(crate) fn cpu_probe(&self) -> CpuProbe {
        CpuProbe {
            name: self.name.clone(),
            pid: Some(self.pid()),
        }
    }

    /// The file its standard error (and output) go to.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for BenchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `target/release/{name} {args}` with its output in `log`, and
/// waits until `GET http://{addr}{ready_path}` answers 2xx (at most 30 s).
///
/// # Errors
/// When the binary does not start, exits early (its log is quoted) or
/// never becomes ready.
pub(crate) fn spawn_release_bin(
    name: &str,
    args: &[String],
    addr: SocketAddr,
    ready_path: &str,
    log: &Path,
) -> Result<BenchProcess> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let bin = release_dir().join(name);
    let child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {} (was it built in release?)", bin.display()))?;
    let mut proc = BenchProcess {
        name: name.to_string(),
        child,
        log: log.to_path_buf(),
    };
    let url = format!("http://{addr}{ready_path}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let started = Instant::now();
    loop {
        if let Some(status) = proc.child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{name} exited ({status}) before it was ready; its log:\n{text}");
        }
        if http.get(&url).send().is_ok_and(|r| r.status().is_success()) {
            return Ok(proc);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "{name} did not answer {url} within 30 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process whose CPU time [`measure`] reports.
#[derive(Debug, Clone)]
pub(crate) struct CpuProbe {
    /// Its name in the report.
    pub(crate) name: String,
    /// Its pid; `None` for this process (the load generator).
    pub(crate) pid: Option<u32>,
}

/// CPU seconds (user + system) a process has used so far.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path} is not a stat line"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("{path} has too few fields"))?
            .parse::<f64>()?)
    };
    Ok((tick(11)? + tick(12)?) / USER_HZ)
}

/// A load run with the CPU the processes used during it.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// What the load generator measured.
    pub(crate) result: LoadResult,
    /// The connections used.
    pub(crate) connections: usize,
    /// (process name, CPU cores busy on average over the run) — the load
    /// generator first, as `loadgen`.
    pub(crate) cpu: Vec<(String, f64)>,
}

impl Measured {
    /// CPU microseconds per request of the named process.
    pub(crate) fn cpu_us_per_request(&self, name: &str) -> Option<f64> {
        let cores = self.cpu.iter().find(|(n, _)| n == name)?.1;
        (self.result.rps > 0.0).then(|| cores * 1e6 / self.result.rps)
    }

    /// CPU microseconds per request of every probed process, as a flat
    /// JSON object from process name to µs (two decimals; `null` when no
    /// request completed): the `cpu_us_per_req` key of the result files.
    pub(crate) fn cpu_us_per_req(&self) -> Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        Value::Object(
            self.cpu
                .iter()
                .map(|(n, _)| (n.clone(), json!(self.cpu_us_per_request(n).map(round))))
                .collect(),
        )
    }

    /// The figures as a JSON object: `rps`, `p50_ms`, `p99_ms`, `max_ms`,
    /// `requests`, `errors`, `non_2xx`, `status_counts`, `connections`, and
    /// per process `cpu_cores` and `cpu_us_per_request`.
    pub(crate) fn to_json(&self) -> Value {
        let r = &self.result;
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        let cpu: Map<String, Value> = self
            .cpu
            .iter()
            .map(|(n, cores)| {
                (
                    n.clone(),
                    json!({
                        "cpu_cores": round(*cores, 3),
                        "cpu_us_per_request": self.cpu_us_per_request(n).map(|u| round(u, 2)),
                    }),
                )
            })
            .collect();
        json!({
            "rps": round(r.rps, 0),
            "p50_ms": round(r.p50_ms, 3),
            "p99_ms": round(r.p99_ms, 3),
            "max_ms": round(r.max_ms, 3),
            "requests": r.requests,
            "errors": r.errors,
            "non_2xx": r.non_2xx,
            "status_counts": r.status_counts.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<Map<_, _>>(),
            "connections": self.connections,
            "cpu": cpu,
        })
    }

    /// Fails when any request failed or answered other than 2xx: a
    /// benchmark of errors measures nothing.
    pub(crate) fn ensure_clean(&self, what: &str) -> Result<()> {
        let r = &self.result;
        if r.requests == 0 || r.errors > 0 || r.non_2xx > 0 {
            bail!(
                "{what}: {} responses, {} transport errors, {} non-2xx ({:?}); the figures are not valid",
                r.requests,
                r.errors,
                r.non_2xx,
                r.status_counts
            );
        }
        Ok(())
    }
}

/// Runs the load generator on `spec` with `threads` worker threads (`None`:
/// one per CPU), on its own runtime (call it outside any tokio runtime), and
/// reports the average CPU cores that this process (the load generator, as
/// `loadgen`) and each of `probes` used over the run, warm-up included.
///
/// # Errors
/// When the load cannot run (see [`loadgen::run`]) or a process's CPU time
/// cannot be read.
pub(crate) fn measure(
    spec: &LoadSpec,
    probes: &[CpuProbe],
    threads: Option<usize>,
) -> Result<Measured> {
    let all: Vec<CpuProbe> = std::iter::once(CpuProbe {
        name: "loadgen".into(),
        pid: None,
    })
    .chain(probes.iter().cloned())
    .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    eprintln!(
        "==> load: {} {} × {} connections, {:?} warm-up + {:?} measured",
        spec.method, spec.url, spec.connections, spec.warmup, spec.duration
    );
    let before = all
        .iter()
        .map(|p| cpu_seconds(p.pid))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let result = rt.block_on(async {
        match threads {
            Some(t) => loadgen::run_with_threads(spec, t).await,
            None => loadgen::run(spec).await,
        }
    })?;
    let wall = t0.elapsed().as_secs_f64();
    let after = all
        .iter()
        .map(|p| cpu_seconds(p.pid))
        .collect::<Result<Vec<_>>>()?;
    let cpu = all
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(p, (b, a))| (p.name.clone(), (a - b) / wall))
        .collect();
    Ok(Measured {
        result,
        connections: spec.connections,
        cpu,
    })
}

/// Prints one row per measured path.
pub(crate) fn print_table(rows: &[(&str, &Measured)]) {
    let mut table = Table::new([
        "path",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "non-2xx",
        "cpu (cores, µs/req)",
    ]);
    table.align_right(&[1, 2, 3, 4, 5, 6, 7]);
    for (name, m) in rows {
        let r = &m.result;
        let cpu = m
            .cpu
            .iter()
            .map(|(n, c)| {
                format!(
                    "{n} {c:.2}/{:.1}",
                    m.cpu_us_per_request(n).unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        table.row([
            name.to_string(),
            m.connections.to_string(),
            format!("{:.0}", r.rps),
            format!("{:.3}", r.p50_ms),
            format!("{:.3}", r.p99_ms),
            format!("{:.3}", r.max_ms),
            r.errors.to_string(),
            r.non_2xx.to_string(),
            cpu,
        ]);
    }
    print!("{table}");
}

/// Starts the demo platform from release binaries for the platform
/// benchmark `name` (`node`, `gateway`) with the options in `args`; `None`
/// when this process re-executed itself in release and the benchmark ran
/// there.
pub(crate) fn start_platform(
    name: &str,
    args: &[String],
) -> Result<Option<(LoadOptions, demo::Running)>> {
    let opts = LoadOptions::parse(args)?;
    if reexec_in_release(name, args, &["ndxp-node", "ndxp-gateway", "ndxp-examples"])? {
        return Ok(None);
    }
    let running = demo::start(demo::Options {
        dir: root().join(format!("target/ndxp-bench/{name}-platform")),
        once: true,
        ports: demo::Ports::default(),
        release: true,
        bin: Some(release_dir()),
        quiet_nodes: true,
    })?;
    Ok(Some((opts, running)))
}

/// What a platform benchmark measures besides the backend directly.
pub(crate) struct PlatformRun<'a> {
    /// The benchmark (`node`, `gateway`), which names its row and file.
    pub(crate) name: &'a str,
    /// The platform's processes whose CPU is probed (the sample backend,
    /// `citizen-registry`, is probed as well).
    pub(crate) processes: &'a [&'a str],
    /// The sample record straight from the backend.
    pub(crate) direct_url: String,
    /// The same record through the platform.
    pub(crate) platform: LoadSpec,
    /// The `what` of the result file.
    pub(crate) what: &'a str,
    /// The `path` of the result file.
    pub(crate) path: String,
}

/// Measures the direct path, then the platform path, stops the platform,
/// prints both runs as a table with the platform path's share of the
/// direct rate, and writes `{name}.json`; fails when the platform run was
/// not clean.
pub(crate) fn measure_platform(
    running: demo::Running,
    opts: &LoadOptions,
    run: PlatformRun<'_>,
) -> Result<()> {
    let probes: Vec<CpuProbe> = run
        .processes
        .iter()
        .chain(&["citizen-registry"])
        .map(|name| CpuProbe {
            name: name.to_string(),
            pid: running.pid(name),
        })
        .collect();
    let backend = &probes[probes.len() - 1..];
    let direct = measure(&opts.get(run.direct_url, Vec::new()), backend, opts.threads)?;
    let platform = measure(&run.platform, &probes, opts.threads)?;
    drop(running);
    let name = run.name;
    print_table(&[(name, &platform), ("direct", &direct)]);
    let share = if direct.result.rps > 0.0 {
        platform.result.rps / direct.result.rps * 100.0
    } else {
        0.0
    };
    println!("{name} path: {share:.1}% of the direct rate");
    write_load_json(
        name,
        Some(&platform),
        &direct,
        json!({
            "what": run.what,
            "path": run.path,
            "share_of_direct_percent": (share * 10.0).round() / 10.0,
            "seconds": opts.duration.as_secs_f64(),
            "warmup_seconds": opts.warmup.as_secs_f64(),
        }),
    )?;
    platform.ensure_clean(name)
}

/// Writes `target/ndxp-bench/{name}.json` with the docs/design.md §13 keys: the
/// platform path's figures at the top level (`rps`, `p50_ms`, `p99_ms`,
/// ...), the direct path's as `direct_rps`, `direct_p50_ms`,
/// `direct_p99_ms`, `connections`, both runs in full under `platform` and
/// `direct`, plus `extra`'s keys. Without a platform run (`bench direct`)
/// the top-level figures are the direct ones.
///
/// # Errors
/// When the file cannot be written.
pub(crate) fn write_load_json(
    name: &str,
    platform: Option<&Measured>,
    direct: &Measured,
    extra: Value,
) -> Result<()> {
    super::write_result(name, &load_json(name, platform, direct, extra))
}

/// The document [`write_load_json`] writes.
fn load_json(name: &str, platform: Option<&Measured>, direct: &Measured, extra: Value) -> Value {
    let top = platform.unwrap_or(direct);
    let mut doc = Map::new();
    doc.insert("name".into(), json!(name));
    if let Value::Object(m) = top.to_json() {
        doc.extend(m);
    }
    let d = direct.to_json();
    for k in ["rps", "p50_ms", "p99_ms"] {
        doc.insert(format!("direct_{k}"), d[k].clone());
    }
    doc.insert("connections".into(), json!(direct.connections));
    doc.insert("cpu_us_per_req".into(), top.cpu_us_per_req());
    if let Some(p) = platform {
        doc.insert("platform".into(), p.to_json());
    }
    doc.insert("direct".into(), d);
    doc.insert(
        "machine".into(),
        json!({"cpus": std::thread::available_parallelism().map_or(0, |n| n.get())}),
    );
    if let Value::Object(m) = extra {
        doc.extend(m);
    }
    Value::Object(doc)
}

/// The options every load benchmark takes: `--connections N` (64),
/// `--seconds S` (10), `--warmup S` (2), `--threads N` (load generator
/// threads, default one per CPU) and `--backend-threads N` (worker threads
/// of the sample backend, default one per CPU).
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    /// Concurrent connections.
    pub(crate) connections: usize,
    /// Measured seconds.
    pub(crate) duration: Duration,
    /// Warm-up seconds.
    pub(crate) warmup: Duration,
    /// Load generator threads.
    pub(crate) threads: Option<usize>,
    /// Worker threads of the sample backend.
    pub(crate) backend_threads: Option<usize>,
    /// Run the sample backend with one runtime and SO_REUSEPORT listener
    /// per thread.
    pub(crate) backend_reuseport: bool,
}

impl LoadOptions {
    /// Parses the options; unknown ones are errors.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            connections: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            threads: None,
            backend_threads: None,
            backend_reuseport: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--backend-reuseport" {
                o.backend_reuseport = true;
                continue;
            }
            let mut value = |what: &str| -> Result<f64> {
                let v = it
                    .next()
                    .with_context(|| format!("{a} needs a value ({what})"))?;
                let n: f64 = v
                    .parse()
                    .with_context(|| format!("{a} must be a number, found {v:?}"))?;
                if !(n.is_finite() && n > 0.0) {
                    bail!("{a} must be positive, found {v:?}");
                }
                Ok(n)
            };
            match a.as_str() {
                "--connections" => o.connections = value("a count")? as usize,
                "--seconds" => o.duration = Duration::from_secs_f64(value("seconds")?),
                "--warmup" => o.warmup = Duration::from_secs_f64(value("seconds")?),
                "--threads" => o.threads = Some(value("a count")? as usize),
                "--backend-threads" => o.backend_threads = Some(value("a count")? as usize),
                other => bail!(
                    "unknown option {other:?} (known: --connections N, --seconds S, --warmup S, --threads N, --backend-threads N, --backend-reuseport)"
                ),
            }
        }
        Ok(o)
    }

    /// A GET load on `url` with these options.
    pub(crate) fn get(&self, url: String, headers: Vec<(String, String)>) -> LoadSpec {
        LoadSpec {
            url,
            method: http::Method::GET,
            headers,
            body: None,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
        }
    }
}

/// Starts the sample backend `citizen-registry` (release build) on a free
/// loopback port; returns it with its base URL.
///
/// # Errors
/// As [`spawn_release_bin`].
pub(crate) fn start_citizen_registry(
    opts: &LoadOptions,
    log_dir: &Path,
) -> Result<(BenchProcess, String)> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut args = vec!["--listen".to_string(), addr.to_string()];
    if let Some(t) = opts.backend_threads {
        args.extend(["--threads".to_string(), t.to_string()]);
    }
    if opts.backend_reuseport {
        args.push("--reuseport".to_string());
    }
    let proc = spawn_release_bin(
        "citizen-registry",
        &args,
        addr,
        "/healthz",
        &log_dir.join("citizen-registry.log"),
    )?;
    Ok((proc, format!("http://{addr}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_load_options() {
        let args: Vec<String> = ["--connections", "8", "--seconds", "1.5", "--threads", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = LoadOptions::parse(&args).unwrap();
        assert_eq!(o.connections, 8);
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert_eq!(o.warmup, Duration::from_secs(2));
        assert_eq!(o.threads, Some(1));
        let d = LoadOptions::parse(&[]).unwrap();
        assert_eq!(d.connections, 64);
        for bad in [
            &["--connections"][..],
            &["--seconds", "0"],
            &["--x"],
            &["--warmup", "nan"],
        ] {
            let args: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(LoadOptions::parse(&args).is_err(), "{bad:?}");
        }
    }

    fn measured(rps: f64, p50: f64, p99: f64) -> Measured {
        Measured {
            result: LoadResult {
                requests: (rps * 10.0) as u64,
                errors: 0,
                non_2xx: 0,
                rps,
                p50_ms: p50,
                p99_ms: p99,
                max_ms: p99 * 2.0,
                status_counts: [(200, (rps * 10.0) as u64)].into_iter().collect(),
            },
            connections: 64,
            cpu: vec![("loadgen".into(), 0.5), ("backend".into(), 0.25)],
        }
    }

    #[test]
    fn the_json_has_the_design_keys() {
        let platform = measured(6000.0, 4.0, 20.0);
        let direct = measured(120_000.0, 0.4, 2.0);
        let doc = load_json("node", Some(&platform), &direct, json!({"what": "x"}));
        assert_eq!(doc["rps"], 6000.0);
        assert_eq!(doc["p50_ms"], 4.0);
        assert_eq!(doc["p99_ms"], 20.0);
        assert_eq!(doc["direct_rps"], 120_000.0);
        assert_eq!(doc["direct_p50_ms"], 0.4);
        assert_eq!(doc["direct_p99_ms"], 2.0);
        assert_eq!(doc["connections"], 64);
        assert_eq!(doc["what"], "x");
        assert_eq!(doc["platform"]["status_counts"]["200"], 60_000);
        // 0.5 cores at 120,000 requests/s: about 4.17 µs per request.
        assert_eq!(doc["direct"]["cpu"]["loadgen"]["cpu_us_per_request"], 4.17);
        // The flat per-process figures are the platform run's: 0.25 cores
        // at 6,000 requests/s is 41.67 µs per request.
        assert_eq!(
            doc["cpu_us_per_req"],
            json!({"loadgen": 83.33, "backend": 41.67})
        );

        let alone = load_json("direct", None, &direct, json!({}));
        assert_eq!(alone["rps"], alone["direct_rps"]);
        assert!(alone.get("platform").is_none());
        assert_eq!(alone["cpu_us_per_req"]["backend"], 2.08);
        let mut idle = direct.clone();
        idle.result.rps = 0.0;
        assert_eq!(
            idle.cpu_us_per_req(),
            json!({"loadgen": null, "backend": null})
        );
        assert!(direct.ensure_clean("direct").is_ok());
        let mut failed = direct.clone();
        failed.result.non_2xx = 1;
        assert!(failed.ensure_clean("direct").is_err());
    }

    #[test]
    fn reads_own_cpu_time() {
        // Busy work shows up as CPU time (however loaded the machine is:
        // spin until it does, or give up after 20 s of wall time).
        let a = cpu_seconds(None).unwrap();
        let t = Instant::now();
        let mut b = a;
        let mut x = 0u64;
        while b < a + 0.05 && t.elapsed() < Duration::from_secs(20) {
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            b = cpu_seconds(None).unwrap();
        }
        assert!(x > 0 && b >= a + 0.05, "{a} -> {b}");
        assert!(cpu_seconds(Some(std::process::id())).unwrap() >= b);
        assert!(cpu_seconds(Some(u32::MAX)).is_err());
    }
}
