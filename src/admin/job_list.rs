//! The issuance jobs that `POST /certificates` creates, as
//! `GET /certificates/jobs/{id}` shows them (README, "Admin API"), and the
//! bounded list that keeps them.

use std::collections::BTreeMap;

use serde::Serialize;

/// Jobs kept for inspection; the oldest finished ones go first.
pub const MAX_JOBS: usize = 1000;

/// One job as `GET /certificates/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Job {
    /// 16 random hex digits.
    pub(super) id: String,
    /// `Pending`, `Running`, `Completed` or `Failed`.
    pub(super) runtime_status: &'static str,
    /// The step in flight, or the outcome.
    pub(super) custom_status: CustomStatus,
    /// RFC 3339.
    pub(super) created_time: String,
    /// RFC 3339.
    pub(super) last_updated_time: String,
    /// One entry per hostname, in the order of the request.
    pub(super) hostnames: Vec<HostJob>,
    /// Where its states are shared with the other instances, until it
    /// ends.
    #[serde(skip)]
    pub(super) copy: Option<super::job_share::JobCopy>,
}

/// A job's `customStatus`: the step (README, "Admin API": job steps), a
/// message, and the error code once failed.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CustomStatus {
    /// The step name, or `Completed`/`Failed`.
    pub(super) status: &'static str,
    /// What is happening, for a person.
    pub(super) message: String,
    /// The error code once failed.
    pub(super) error: Option<String>,
}

/// One hostname's part of a job.
#[derive(Debug, Clone, Serialize)]
pub(super) struct HostJob {
    /// The normalised name.
    pub(super) hostname: String,
    /// Its step name, or `Completed`/`Failed`.
    pub(super) status: &'static str,
    /// What is happening, for a person.
    pub(super) message: String,
    /// The error code once failed.
    pub(super) error: Option<String>,
    /// Whether its order has ended.
    pub(super) done: bool,
}

/// The jobs kept, at most [`MAX_JOBS`].
#[derive(Default)]
pub(super) struct Jobs {
    /// By id, for `GET /certificates/jobs/{id}`.
    pub(super) by_id: BTreeMap<String, Job>,
    order: std::collections::VecDeque<String>,
}

impl Jobs {
    /// Keeps `job`, dropping the oldest finished ones beyond [`MAX_JOBS`].
    pub(super) fn insert(&mut self, job: Job) {
        self.order.push_back(job.id.clone());
        self.by_id.insert(job.id.clone(), job);
        while self.by_id.len() > MAX_JOBS {
            // The oldest finished job goes; running ones are kept.
            let Some(position) = self.order.iter().position(|id| {
                self.by_id
                    .get(id)
                    .is_none_or(|j| matches!(j.runtime_status, "Completed" | "Failed"))
            }) else {
                break;
            };
            if let Some(id) = self.order.remove(position) {
                self.by_id.remove(&id);
            }
        }
    }
}

/// The job's overall status from its hostnames: Failed once every
/// hostname is done and one failed; Completed when all succeeded; else
/// Running (Pending until the first step).
pub(super) fn summarize(job: &mut Job) {
    job.last_updated_time = crate::clock::rfc3339(crate::clock::unix_now());
    let failed = job.hostnames.iter().find(|h| h.done && h.error.is_some());
    let all_done = job.hostnames.iter().all(|h| h.done);
    let (runtime, custom) = if all_done {
        match failed {
            Some(host) => (
                "Failed",
                CustomStatus {
                    status: "Failed",
                    message: format!("{}: {} ({})", host.hostname, host.message, host.status),
                    error: host.error.clone(),
                },
            ),
            None => (
                "Completed",
                CustomStatus {
                    status: "Completed",
                    message: format!(
                        "certificates served for {}",
                        job.hostnames
                            .iter()
                            .map(|h| h.hostname.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    error: None,
                },
            ),
        }
    } else {
        let current = job.hostnames.iter().find(|h| !h.done);
        let started = job.hostnames.iter().any(|h| h.status != "Pending");
        (
            if started { "Running" } else { "Pending" },
            CustomStatus {
                status: current.map_or("Pending", |h| h.status),
                message: current
                    .map_or_else(String::new, |h| format!("{}: {}", h.hostname, h.message)),
                error: None,
            },
        )
    };
    job.runtime_status = runtime;
    job.custom_status = custom;
    // The new state to the other instances; once it ended, the last one.
    if let Some(copy) = &job.copy
        && let Ok(json) = serde_json::to_vec(&*job)
    {
        copy.send_replace(json);
    }
    if matches!(job.runtime_status, "Completed" | "Failed") {
        job.copy = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_bounded_keeping_running_ones() {
        let mut jobs = Jobs::default();
        let job = |id: usize, status| Job {
            id: id.to_string(),
            runtime_status: status,
            custom_status: CustomStatus {
                status,
                message: String::new(),
                error: None,
            },
            created_time: String::new(),
            last_updated_time: String::new(),
            hostnames: Vec::new(),
            copy: None,
        };
        jobs.insert(job(0, "Running"));
        for i in 1..=MAX_JOBS + 5 {
            jobs.insert(job(i, "Completed"));
        }
        assert_eq!(jobs.by_id.len(), MAX_JOBS);
        assert!(jobs.by_id.contains_key("0"), "running job kept");
        assert!(!jobs.by_id.contains_key("1"), "oldest finished dropped");
    }
}
