//! The `sniwalk` command line: run, check, resolve, renew, status,
//! selfsigned, pem merge, ticket-keys, storage ls and migrate.
//!
//! This is the only place that prints to stdout and that uses `anyhow`;
//! the commands live in `cli/`, one file per group.

#![forbid(unsafe_code)]

mod cli;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use cli::args::{Cli, Command, PemCommand, TicketKeysCommand};
use cli::certs::{check, pem_merge, resolve, selfsigned};
use cli::run::run;
use cli::status::{renew, status};
use cli::storage::storage;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(Path::new("proxy.yaml")),
        Some(Command::Run(args)) => run(&args.config),
        Some(Command::Check { config, json }) => check(&config.config, json),
        Some(Command::Resolve {
            config,
            listener,
            json,
            name,
            no_sni,
        }) => resolve(
            &config.config,
            listener.as_deref(),
            name.as_deref(),
            no_sni,
            json,
        ),
        Some(Command::Renew {
            config,
            timeout,
            domain,
        }) => renew(&config.config, &domain, &timeout),
        Some(Command::Status {
            config,
            admin,
            json,
        }) => status(&config.config, admin.as_deref(), json),
        Some(Command::TicketKeys {
            command: TicketKeysCommand::Rotate { file, keep },
        }) => sniwalk::tickets::rotate(&file, keep)
            .map(|keys| {
                println!(
                    "{}: {} key(s), a new one in front",
                    file.display(),
                    keys.len()
                );
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Some(Command::Selfsigned {
            name,
            days,
            rsa,
            out,
        }) => selfsigned(&name, days, rsa, &out),
        Some(Command::Pem {
            command: PemCommand::Merge { key, cert, chain },
        }) => pem_merge(&key, &cert, chain.as_deref()),
        Some(Command::Storage { command }) => storage(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sniwalk: {e:#}");
            ExitCode::from(2)
        }
    }
}
