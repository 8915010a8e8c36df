//! Where sniwalk keeps its state: every path under `state_dir`, named in
//! one place (README, "State directory"). Everything that reads or writes
//! state asks a [`StateLayout`] for the path; nothing else joins file
//! names onto `state_dir`.
//!
//! ```text
//! state_dir/
//!   default.pem                 generated default certificate (this instance)
//!   domains.json                domains added through the admin API
//!   certificates/<domain>.pem   issued (ACME) and imported certificates
//!   acme/accounts/<id>.json     ACME account credentials
//!   acme/locks/<domain>.lock    order locks shared by instances
//!   acme/http-01/<token>        HTTP-01 answers any instance can serve
//!   acme/requests/<domain>.json forced-renewal requests (`sniwalk renew`)
//!   acme/results/<domain>.json  their outcomes
//!   acme/status.json            per-domain ACME state (survives restarts)
//! ```
//!
//! The session ticket keys are not here: `tls.ticket_keys_file` names its
//! own file, so instances can share it without sharing `state_dir`.

use std::path::{Path, PathBuf};

/// The paths under one `state_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    /// The layout of the state directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateLayout { root: root.into() }
    }

    /// The state directory itself (created owner-only before the first
    /// write into it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The default certificate sniwalk generates when `default_certificate`
    /// is not configured; local to each instance.
    pub fn generated_default(&self) -> PathBuf {
        self.root.join("default.pem")
    }

    /// The domain store: domains added at run time through the admin API.
    pub fn domain_store(&self) -> PathBuf {
        self.root.join("domains.json")
    }

    /// The folder of stored per-domain certificates (watched by the reload
    /// task).
    pub fn certificates_dir(&self) -> PathBuf {
        self.root.join("certificates")
    }

    /// Where the certificate of `domain` is stored when ACME issued it or
    /// the admin API imported it.
    pub fn stored_certificate(&self, domain: &str) -> PathBuf {
        self.certificates_dir().join(format!("{domain}.pem"))
    }

    /// The folder of ACME state and of the files through which `sniwalk
    /// renew` talks to a running proxy (owner-only).
    pub fn acme_dir(&self) -> PathBuf {
        self.root.join("acme")
    }

    /// The folder of ACME account credentials.
    pub fn accounts_dir(&self) -> PathBuf {
        self.acme_dir().join("accounts")
    }

    /// The credentials file named `file_name` (see
    /// `acme::account::credentials_file_name`).
    pub fn account(&self, file_name: &str) -> PathBuf {
        self.accounts_dir().join(file_name)
    }

    /// The folder of order locks.
    pub fn locks_dir(&self) -> PathBuf {
        self.acme_dir().join("locks")
    }

    /// The order lock of `domain`.
    pub fn lock(&self, domain: &str) -> PathBuf {
        self.locks_dir().join(format!("{domain}.lock"))
    }

    /// The folder of HTTP-01 answers shared by every instance on this
    /// `state_dir`.
    pub fn http01_dir(&self) -> PathBuf {
        self.acme_dir().join("http-01")
    }

    /// The shared HTTP-01 answer of `token` (a checked token, so it cannot
    /// leave the folder: `challenge::is_token`).
    pub fn http01_answer(&self, token: &str) -> PathBuf {
        self.http01_dir().join(token)
    }

    /// The folder where `sniwalk renew` drops forced-renewal requests.
    pub fn requests_dir(&self) -> PathBuf {
        self.acme_dir().join("requests")
    }

    /// The forced-renewal request for `domain`.
    pub fn request(&self, domain: &str) -> PathBuf {
        self.requests_dir().join(format!("{domain}.json"))
    }

    /// The folder of forced-renewal outcomes.
    pub fn results_dir(&self) -> PathBuf {
        self.acme_dir().join("results")
    }

    /// The outcome of the last forced renewal of `domain`.
    pub fn result(&self, domain: &str) -> PathBuf {
        self.results_dir().join(format!("{domain}.json"))
    }

    /// The per-domain ACME status, written on every change and read back
    /// at start and by `sniwalk check`.
    pub fn acme_status(&self) -> PathBuf {
        self.acme_dir().join("status.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_root() {
        let state = StateLayout::new("/var/lib/sniwalk");
        let paths = [
            state.generated_default(),
            state.domain_store(),
            state.stored_certificate("shop.example.test"),
            state.account("0123456789abcdef.json"),
            state.lock("shop.example.test"),
            state.http01_answer("tok"),
            state.request("shop.example.test"),
            state.result("shop.example.test"),
            state.acme_status(),
        ];
        for path in &paths {
            assert!(path.starts_with("/var/lib/sniwalk"), "{}", path.display());
        }
        // The names existing state directories already hold (no migration).
        assert_eq!(
            state.stored_certificate("a.test"),
            Path::new("/var/lib/sniwalk/certificates/a.test.pem")
        );
        assert_eq!(
            state.lock("a.test"),
            Path::new("/var/lib/sniwalk/acme/locks/a.test.lock")
        );
        assert_eq!(
            state.http01_answer("tok"),
            Path::new("/var/lib/sniwalk/acme/http-01/tok")
        );
        assert_eq!(
            state.acme_status(),
            Path::new("/var/lib/sniwalk/acme/status.json")
        );
        assert_eq!(
            state.domain_store(),
            Path::new("/var/lib/sniwalk/domains.json")
        );
        assert_eq!(
            state.generated_default(),
            Path::new("/var/lib/sniwalk/default.pem")
        );
    }
}
