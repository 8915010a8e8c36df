//! `sniwalk storage ls` and `sniwalk storage migrate`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use sniwalk::config::Config;

use crate::cli::args::StorageCommand;
use crate::cli::config_path;
use crate::cli::output::{found_problem, out, outln};
use crate::cli::run::init_logging;

/// `storage ls` and `storage migrate`: exit 1 when a storage cannot be
/// opened or reached, both configurations name one, or a key failed.
/// Warnings only in the log: the proxy's own message on an etcd that is
/// unreachable at start (it would serve its cache) does not apply here.
/// `top` is a `-c FILE` given before the command.
pub(crate) fn storage(command: StorageCommand, top: Option<&Path>) -> anyhow::Result<ExitCode> {
    use sniwalk::storage;
    init_logging("warn,sniwalk::storage::open=off");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let failed = |e: storage::MigrateError| found_problem(e.into());
    match command {
        StorageCommand::Ls { config, json } => {
            let config = Config::load(&config_path::choose(config.config.as_deref().or(top))?)?;
            let listed = match runtime.block_on(storage::inventory_of(&config)) {
                Ok(listed) => listed,
                Err(e) => return failed(e),
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&listed)?)?;
            } else {
                out(format_args!("{}", listed.render_text()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        StorageCommand::Migrate {
            config,
            to,
            dry_run,
        } => {
            let from = Config::load(&config_path::choose(config.config.as_deref().or(top))?)?;
            let to = Config::load(&to)?;
            // A closed stdout does not stop a migration half-way: the rest
            // is copied, and the first write error is reported at the end.
            let mut closed = None;
            let print = |key: &storage::KeyReport| {
                if closed.is_none() {
                    closed = outln!("{}", key.line(dry_run)).err();
                }
            };
            let migrated = runtime.block_on(storage::migrate_configs(&from, &to, dry_run, print));
            if let Some(e) = closed {
                return Err(e);
            }
            match migrated {
                Ok(report) => {
                    outln!("{}", report.summary())?;
                    Ok(ExitCode::from(u8::from(report.failed() > 0)))
                }
                Err(e) => failed(e),
            }
        }
    }
}
