//! The command line's arguments (clap): every command and its options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// TLS-terminating reverse proxy that picks the certificate for every
/// handshake by walking a domain tree.
#[derive(Parser)]
#[command(
    name = "sniwalk",
    version,
    about,
    after_help = "With no command, runs `sniwalk run`: a bare `sniwalk` serves ./proxy.yaml.\n\
        Without --config, commands read ./proxy.yaml when it exists, else the file named by\n\
        $SNIWALK_CONFIG, else /etc/sniwalk/proxy.yaml."
)]
pub(crate) struct Cli {
    /// The configuration file for a bare `sniwalk` (as `run --config`).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the proxy (also what a bare `sniwalk` does).
    Run(ConfigArg),
    /// Load every certificate as `run` would and print their state;
    /// exits 1 when any has an error.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show which certificate a name gets, and why.
    Resolve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listener whose certdir is the fallback (default: the first TLS listener).
        #[arg(long)]
        listener: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The SNI name to resolve; omit with --no-sni.
        name: Option<String>,
        /// Resolve a client that sends no SNI (connects by IP address).
        #[arg(long, conflicts_with = "name")]
        no_sni: bool,
    },
    /// Ask the running proxy to renew an ACME domain's certificate now, and
    /// wait for the outcome; exits 1 when it failed.
    Renew {
        #[command(flatten)]
        config: ConfigArg,
        /// How long to wait for the outcome (`90s`, `5m`, ...).
        #[arg(long, default_value = "5m")]
        timeout: String,
        /// The ACME-enabled domain.
        domain: String,
    },
    /// Print the running proxy's certificate status (admin API `/status`)
    /// as a table.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// The admin API, e.g. `http://127.0.0.1:9901` (default: `admin.bind`).
        #[arg(long)]
        admin: Option<String>,
        /// Print the JSON as received.
        #[arg(long)]
        json: bool,
    },
    /// Manage the shared TLS session ticket keys file.
    TicketKeys {
        #[command(subcommand)]
        command: TicketKeysCommand,
    },
    /// Write a self-signed server.key (0600) and server.crt for a local
    /// master domain into a certdir.
    Selfsigned {
        /// The name the certificate is for (repeat for more names).
        #[arg(long, required = true)]
        name: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 1095)]
        days: u32,
        /// RSA-2048 instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Replace a server.key or server.crt that is already there (without
        /// it, an existing key is never overwritten).
        #[arg(long)]
        force: bool,
    },
    /// Work with certificate_pem texts.
    Pem {
        #[command(subcommand)]
        command: PemCommand,
    },
    /// What sniwalk instances share (`storage:`): list it, or copy it into
    /// another storage.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Print a shell completion script (bash: save it as
    /// /usr/share/bash-completion/completions/sniwalk; zsh: as `_sniwalk`
    /// in a directory of $fpath; fish: in ~/.config/fish/completions/).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `sniwalk man | man -l -`).
    Man,
    /// Print the JSON Schema of proxy.yaml, for editors (a YAML language
    /// server reads it from a `# yaml-language-server: $schema=FILE` line)
    /// and CI.
    Schema,
}

#[derive(Subcommand)]
pub(crate) enum StorageCommand {
    /// List every key of the configured storage: size, revision, and for a
    /// certificate its names, not-after, SHA-256 and whether it loads.
    /// Never prints a value. Exits 1 when the storage cannot be reached.
    Ls {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Copy what the configured storage holds into the storage of another
    /// configuration (locks, challenge answers, jobs and status aside),
    /// never overwriting a newer certificate or a value that differs.
    /// Exits 1 when a key failed.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The configuration whose storage receives the copy (e.g. one with
        /// `storage: { kind: etcd, ... }`).
        #[arg(long)]
        to: PathBuf,
        /// Decide and print, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum TicketKeysCommand {
    /// Add a fresh key in front (it encrypts from now on), keep the newest
    /// N; creates the file (0600) when missing. Instances re-read it.
    Rotate {
        /// The keys file (`tls.ticket_keys_file`).
        file: PathBuf,
        /// How many keys to keep (older tickets stay valid until their key
        /// drops out).
        #[arg(long, default_value_t = sniwalk::tickets::DEFAULT_KEEP)]
        keep: usize,
    },
}

#[derive(Subcommand)]
pub(crate) enum PemCommand {
    /// Print a validated certificate_pem (key, certificate, chain) made of
    /// separate files.
    Merge {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// The certificate file (may already hold the chain).
        #[arg(long)]
        cert: PathBuf,
        /// Chain (intermediate certificates) file.
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Write the result to this file (atomically, mode 0600: it holds
        /// the private key) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// The `--config` of the commands that read the configuration.
#[derive(Args)]
pub(crate) struct ConfigArg {
    /// The configuration file [default: ./proxy.yaml if it exists, else
    /// $SNIWALK_CONFIG, else /etc/sniwalk/proxy.yaml].
    #[arg(long, short, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}
