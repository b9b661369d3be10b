//! Process facts: open-file limit, CPU time, RSS, the machine, the commit,
//! and `perf` recordings on request.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Raises this process's open-file limit (inherited by the server it
/// spawns) so that both ends of every subscriber socket fit.
pub(crate) fn raise_nofile(subscribers: usize) -> Result<u64> {
    use rlimit::Resource;
    let want = (subscribers as u64) + 16_384;
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).context("reading the open-file limit")?;
    if soft >= want {
        return Ok(soft);
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1_048_576);
    let target = want.min(nr_open);
    if target > hard {
        // Raising the hard limit needs CAP_SYS_RESOURCE (root); fall back to the hard limit.
        if rlimit::setrlimit(Resource::NOFILE, target, target).is_ok() {
            return Ok(target);
        }
    }
    let got = rlimit::increase_nofile_limit(target).context("raising the open-file limit")?;
    Ok(got)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat.
pub(crate) fn cpu_seconds(pid: &str) -> Result<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks);
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("no utime in stat"))?;
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("no stime in stat"))?;
    Ok((utime + stime) / ticks)
}

/// Resident set size in KiB, from /proc/<pid>/status.
pub(crate) fn rss_kib(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// CPU seconds per thread name (tokio workers, the SQLite worker, …) of a process.
pub(crate) fn thread_cpu(pid: &str) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        let Ok(secs) = cpu_seconds(&format!("{pid}/task/{tid}")) else { continue };
        let name = name.trim().to_owned();
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += secs,
            None => by_name.push((name, secs)),
        }
    }
    by_name
}

pub(crate) fn thread_cpu_delta(before: &[(String, f64)], after: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut delta: Vec<(String, f64)> = after
        .iter()
        .map(|(name, secs)| {
            let was = before.iter().find(|(n, _)| n == name).map(|(_, s)| *s).unwrap_or(0.0);
            (name.clone(), secs - was)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    delta
}

/// Busy CPU seconds of the whole machine, from /proc/stat.
pub(crate) fn machine_busy_seconds() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = [0usize, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum::<f64>();
    busy / ticks
}

pub(crate) fn threads(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

pub(crate) fn machine_summary() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}, {mem} memory, kernel {}", kernel.trim())
}

pub(crate) fn commit_summary() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--", "src", "migrations", "Cargo.toml", "Cargo.lock"])
                .is_some_and(|s| s.lines().any(|l| !l.ends_with("Cargo.toml") && !l.ends_with("Cargo.lock")));
            if dirty {
                format!("{head} + uncommitted changes in src/ or migrations/")
            } else {
                head
            }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// Runs `perf record -g` on a process for a while, when asked to.
pub(crate) struct PerfRecording {
    pub(crate) child: Option<Child>,
}

impl PerfRecording {
    pub(crate) fn start(dir: Option<&Path>, pid: u32, name: &str, secs: f64) -> PerfRecording {
        let Some(dir) = dir else { return PerfRecording { child: None } };
        let _ = std::fs::create_dir_all(dir);
        let out = dir.join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .args(["--", "sleep", &format!("{secs:.3}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => PerfRecording { child: Some(c) },
            Err(e) => {
                eprintln!("load: warning: perf could not start ({e}); continuing without it");
                PerfRecording { child: None }
            }
        }
    }

    pub(crate) fn finish(mut self) {
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
