//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`),
//! under the names every Prometheus client library exports, without the
//! `sniwalk_` prefix, so that standard dashboards and alerts work as they
//! are. A leaf of `metrics`.
//!
//! Read at scrape time from Linux's `/proc` (proc(5)): the parsing is pure
//! functions of the text, the reads are [`register`]'s. A file that cannot
//! be read or parsed (another system, a hardened `/proc`) leaves its
//! metrics out of that scrape, with a debug log line; it never fails the
//! scrape.

use std::path::Path;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Clock ticks per second of the times in `/proc/self/stat`: the kernel
/// reports them in USER_HZ, which is 100 on every architecture Debian
/// ships (`sysconf(_SC_CLK_TCK)`, which would need `libc` and `unsafe`,
/// answers 100 there too; proc(5)).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self/stat` tells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stat {
    /// User plus system CPU time, in seconds.
    pub(super) cpu_seconds: f64,
    /// When the process started, in seconds after the system booted.
    pub(super) started_after_boot: f64,
}

/// What `/proc/self/status` tells (each line may be missing).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Memory {
    /// `VmRSS`, in bytes.
    pub(super) resident_bytes: Option<f64>,
    /// `VmSize`, in bytes.
    pub(super) virtual_bytes: Option<f64>,
}

/// Registers the process metrics read now into `registry` (which must not
/// add a prefix).
pub(super) fn register(registry: &mut Registry) {
    let stat = read("/proc/self/stat").and_then(|text| {
        let stat = parse_stat(&text);
        if stat.is_none() {
            tracing::debug!(
                file = "/proc/self/stat",
                "unexpected format: process metrics left out"
            );
        }
        stat
    });
    let boot = read("/proc/stat").and_then(|text| {
        let boot = parse_boot_time(&text);
        if boot.is_none() {
            tracing::debug!(
                file = "/proc/stat",
                "no btime line: process_start_time_seconds left out"
            );
        }
        boot
    });
    let memory = read("/proc/self/status")
        .map(|text| parse_status(&text))
        .unwrap_or_default();
    if let Some(stat) = stat {
        registry.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Unit::Seconds,
            ConstCounter::new(stat.cpu_seconds),
        );
        if let Some(boot) = boot {
            registry.register_with_unit(
                "process_start_time",
                "Start time of the process since unix epoch in seconds",
                Unit::Seconds,
                ConstGauge::new(boot + stat.started_after_boot),
            );
        }
    }
    if let Some(resident) = memory.resident_bytes {
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size in bytes",
            Unit::Bytes,
            ConstGauge::new(resident),
        );
    }
    if let Some(size) = memory.virtual_bytes {
        registry.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size in bytes",
            Unit::Bytes,
            ConstGauge::new(size),
        );
    }
    match count_entries(Path::new("/proc/self/fd")) {
        Ok(open) => registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            ConstGauge::new(open as f64),
        ),
        Err(e) => tracing::debug!(file = "/proc/self/fd", error = %e, "process_open_fds left out"),
    }
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        // RLIM_INFINITY is u64::MAX: as a float it is still "very many".
        Ok((soft, _hard)) => registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            ConstGauge::new(soft as f64),
        ),
        Err(e) => tracing::debug!(error = %e, "getrlimit(NOFILE) failed: process_max_fds left out"),
    }
}

/// Parses `/proc/self/stat` (proc(5)): `pid (comm) state ...`, where
/// `comm` may hold spaces and parentheses, so the fields are counted from
/// the last `)`. Field 14 `utime`, 15 `stime` and 22 `starttime` are in
/// clock ticks. `None` when the text is not such a line.
pub(super) fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_comm) = text.rsplit_once(')')?;
    // Fields from 3 (`state`) on; field N is at index N - 3.
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
    let ticks = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
    let (utime, stime, starttime) = (ticks(14)?, ticks(15)?, ticks(22)?);
    Some(Stat {
        cpu_seconds: utime.saturating_add(stime) as f64 / TICKS_PER_SECOND,
        started_after_boot: starttime as f64 / TICKS_PER_SECOND,
    })
}

/// Parses `/proc/self/status` (proc(5)): `VmRSS:` and `VmSize:`, given in
/// kB (KiB). A line that is missing or malformed leaves its value out.
pub(super) fn parse_status(text: &str) -> Memory {
    let mut memory = Memory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "VmRSS" => &mut memory.resident_bytes,
            "VmSize" => &mut memory.virtual_bytes,
            _ => continue,
        };
        let mut parts = value.split_ascii_whitespace();
        if let (Some(number), Some("kB"), None) = (parts.next(), parts.next(), parts.next())
            && let Ok(kib) = number.parse::<u64>()
        {
            *slot = Some(kib as f64 * 1024.0);
        }
    }
    memory
}

/// Parses the `btime` line of `/proc/stat` (proc(5)): when the system
/// booted, in seconds since the Unix epoch.
pub(super) fn parse_boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds as f64)
}

/// Reads a `/proc` file, `None` (logged at debug) when it cannot be read.
fn read(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::debug!(file = path, error = %e, "cannot read: process metrics left out");
            None
        }
    }
}

/// How many entries `dir` has (the open file descriptors in
/// `/proc/self/fd`; the one this listing holds open is among them, as in
/// every Prometheus client).
fn count_entries(dir: &Path) -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        entry?;
        count += 1;
    }
    Ok(count)
}
