//! `sniwalk storage ls` and `sniwalk storage migrate`.

use std::process::ExitCode;

use anyhow::Context as _;
use sniwalk::config::Config;

use crate::cli::args::StorageCommand;
use crate::cli::run::init_logging;

/// `storage ls` and `storage migrate`: exit 1 when a storage cannot be
/// opened or reached, both configurations name one, or a key failed.
/// Warnings only in the log: the proxy's own message on an etcd that is
/// unreachable at start (it would serve its cache) does not apply here.
pub(crate) fn storage(command: StorageCommand) -> anyhow::Result<ExitCode> {
    use sniwalk::storage;
    init_logging("warn,sniwalk::storage::open=off");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let failed = |e: storage::MigrateError| {
        eprintln!("sniwalk: {e}");
        Ok(ExitCode::from(1))
    };
    match command {
        StorageCommand::Ls { config, json } => {
            let config = Config::load(&config.config)?;
            let listed = match runtime.block_on(storage::inventory_of(&config)) {
                Ok(listed) => listed,
                Err(e) => return failed(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                print!("{}", listed.render_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        StorageCommand::Migrate {
            config,
            to,
            dry_run,
        } => {
            let (from, to) = (Config::load(&config.config)?, Config::load(&to)?);
            let print = |key: &storage::KeyReport| println!("{}", key.line(dry_run));
            match runtime.block_on(storage::migrate_configs(&from, &to, dry_run, print)) {
                Ok(report) => {
                    println!("{}", report.summary());
                    Ok(ExitCode::from(u8::from(report.failed() > 0)))
                }
                Err(e) => failed(e),
            }
        }
    }
}
