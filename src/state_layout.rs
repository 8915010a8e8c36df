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
//!   pending/<domain>@<fence>.pem issued while a remote storage was down
//!   shared/<key>                every other storage key (`storage: dir`)
//! ```
//!
//! With `storage: dir` these files are the storage ([`StateLayout::key_path`]
//! maps each storage key to one, so existing state directories need no
//! migration); with `storage: etcd` the certificates here are the local
//! read-through cache of what etcd holds.
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

    /// The folder of issued certificates a remote storage could not take
    /// when they were issued (it was unreachable): stored there once it is
    /// back, then removed.
    pub fn pending_dir(&self) -> PathBuf {
        self.root.join("pending")
    }

    /// `domain`'s certificate waiting to be stored in a remote storage,
    /// issued under the order lock whose fencing token was `fence`
    /// (`<domain>@<fence>.pem`).
    pub fn pending_certificate(&self, domain: &str, fence: u64) -> PathBuf {
        self.pending_dir().join(format!("{domain}@{fence}.pem"))
    }

    /// The per-domain ACME status, written on every change and read back
    /// at start and by `sniwalk check`.
    pub fn acme_status(&self) -> PathBuf {
        self.acme_dir().join("status.json")
    }
}

/// Storage keys kept under names of their own (everything else goes
/// under `shared/`): the key's first segment, the folder and the file
/// name's ending. Only keys of exactly two segments map here.
const AREAS: [(&str, &[&str], &str); 4] = [
    ("certificates", &["certificates"], ".pem"),
    ("accounts", &["acme", "accounts"], ""),
    ("http-01", &["acme", "http-01"], ""),
    ("locks", &["acme", "locks"], ".lock"),
];

/// The storage key of the domain store (`domains.json`).
pub const DOMAINS_KEY: &str = "config/domains";

/// The storage key of the drain store (README: Redundant backends); its
/// file is `shared/config/drains`, as for any key without an area.
pub const DRAINS_KEY: &str = "config/drains";

/// The folder under `state_dir` of every storage key without an area.
const SHARED: &str = "shared";

impl StateLayout {
    /// The file of the storage key `key` (a checked key:
    /// `storage::check_key`, with no segment starting with `.`):
    /// `certificates/<domain>` is `certificates/<domain>.pem`,
    /// `accounts/<name>` is `acme/accounts/<name>`, `http-01/<token>` is
    /// `acme/http-01/<token>`, `locks/orders/<domain>` (an order lock) is
    /// `acme/locks/<domain>.lock`, `config/domains` is `domains.json`; any other
    /// key is `shared/<key>`.
    pub fn key_path(&self, key: &str) -> PathBuf {
        if key == DOMAINS_KEY {
            return self.domain_store();
        }
        if let Some(rest) = key.strip_prefix("locks/orders/")
            && !rest.contains('/')
        {
            return self.lock(rest);
        }
        if let Some((first, rest)) = key.split_once('/')
            && !rest.contains('/')
            && first != "locks"
            && let Some((_, dir, ending)) = AREAS.iter().find(|(name, ..)| *name == first)
        {
            let mut path = self.root.clone();
            path.extend(dir.iter());
            return path.join(format!("{rest}{ending}"));
        }
        let mut path = self.root.join(SHARED);
        path.extend(key.split('/'));
        path
    }

    /// The folders holding the keys under `prefix` (which ends with `/`,
    /// or is empty for every key), each with the key prefix of its files
    /// and their name ending: what [`StateLayout::key_path`] maps there.
    /// The `shared/` folder is one of them when keys there can match.
    pub fn key_folders(&self, prefix: &str) -> Vec<KeyFolder> {
        let mut folders = Vec::new();
        let mut area = |key_prefix: String, dir: PathBuf, ending: &'static str| {
            if key_prefix.starts_with(prefix) || prefix.starts_with(&key_prefix) {
                folders.push(KeyFolder {
                    dir,
                    key_prefix,
                    ending,
                    nested: false,
                });
            }
        };
        // The root's own files: only `domains.json` is a key there.
        area(DOMAINS_KEY.to_string(), self.root.clone(), ".json");
        for (name, dir, ending) in AREAS {
            if name == "locks" {
                area("locks/orders/".into(), self.locks_dir(), ending);
            } else {
                let mut path = self.root.clone();
                path.extend(dir.iter());
                area(format!("{name}/"), path, ending);
            }
        }
        // Keys under shared/ are any key; the walk filters by prefix.
        folders.push(KeyFolder {
            dir: self.root.join(SHARED),
            key_prefix: String::new(),
            ending: "",
            nested: true,
        });
        folders
    }

    /// The storage key of the file at `path`, if it is one
    /// ([`StateLayout::key_path`] read backwards); temporary and other
    /// hidden files (names starting with `.`) are not keys.
    pub fn key_of(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let segments: Vec<&str> = relative.iter().map(|s| s.to_str()).collect::<Option<_>>()?;
        if segments.iter().any(|s| s.starts_with('.') || s.is_empty()) {
            return None;
        }
        let key = match segments.as_slice() {
            ["domains.json"] => DOMAINS_KEY.to_string(),
            [SHARED, rest @ ..] if !rest.is_empty() => rest.join("/"),
            ["acme", "locks", file] => format!("locks/orders/{}", file.strip_suffix(".lock")?),
            [first @ .., file] => {
                let (name, _, ending) = AREAS
                    .iter()
                    .find(|(name, dir, _)| *name != "locks" && dir == &first)?;
                format!("{name}/{}", file.strip_suffix(ending)?)
            }
            [] => return None,
        };
        // Only what key_path maps back to this very file.
        (self.key_path(&key) == path).then_some(key)
    }
}

/// A folder of storage files ([`StateLayout::key_folders`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The key prefix of its files (`certificates/`, `config/domains` for the
    /// root's `domains.json`); empty for `shared/`, whose files are keys by
    /// their path below it.
    pub key_prefix: String,
    /// How its file names end (`.pem`).
    pub ending: &'static str,
    /// Whether keys sit in folders below it too (`shared/`).
    pub nested: bool,
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

    #[test]
    fn storage_keys_map_to_the_existing_files_and_back() {
        let state = StateLayout::new("/var/lib/sniwalk");
        let cases = [
            ("certificates/a.test", "certificates/a.test.pem"),
            ("accounts/0123.json", "acme/accounts/0123.json"),
            ("http-01/tok", "acme/http-01/tok"),
            ("locks/orders/a.test", "acme/locks/a.test.lock"),
            ("locks/ticket-rotation", "shared/locks/ticket-rotation"),
            ("jobs/abc", "shared/jobs/abc"),
            ("ticket-keys", "shared/ticket-keys"),
            ("certificates/a/b", "shared/certificates/a/b"),
            ("config/domains", "domains.json"),
        ];
        for (key, file) in cases {
            let path = state.key_path(key);
            assert_eq!(path, Path::new("/var/lib/sniwalk").join(file), "{key}");
            assert_eq!(state.key_of(&path).as_deref(), Some(key), "{key}");
        }
        for not_a_key in [
            "/var/lib/sniwalk/default.pem",
            "/var/lib/sniwalk/certificates/.a.test.pem.tmp.1.2",
            "/var/lib/sniwalk/certificates/a.test.key",
            "/var/lib/sniwalk/acme/locks/a.test.lock.takeover",
            "/var/lib/sniwalk/acme/status.json",
            "/elsewhere/certificates/a.test.pem",
        ] {
            assert_eq!(state.key_of(Path::new(not_a_key)), None, "{not_a_key}");
        }
        let folders = state.key_folders("certificates/");
        assert_eq!(folders.len(), 2, "{folders:?}");
        assert_eq!(folders[0].dir, state.certificates_dir());
        assert_eq!(state.key_folders("").len(), 6);
    }
}
