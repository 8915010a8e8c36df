//! The `sniwalk` command line: run, check, resolve, renew, status,
//! selfsigned, pem merge, ticket-keys, storage ls and migrate.
//!
//! This is the only place that prints to stdout and that uses `anyhow`;
//! the commands live in `cli/`, one file per group.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use cli::args::{Cli, Command, PemCommand, TicketKeysCommand};
use cli::certs::{check, pem_merge, resolve, selfsigned};
use cli::config_path;
use cli::output::{StdoutClosed, outln, print_error};
use cli::run::run;
use cli::status::{renew, status};
use cli::storage::storage;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say, and the
        // status a shell gives a process ended by SIGPIPE (128 + 13), as
        // `cat` would end; never 0, which could hide a problem the command
        // found before it could print it.
        Err(e) if e.is::<StdoutClosed>() => ExitCode::from(141),
        Err(e) => {
            print_error(&e);
            ExitCode::from(2)
        }
    }
}

/// Runs the command. Exit codes (README, "Command line"): 0 done, 1 the
/// command ran and found a problem (`check`, `renew`, `status`, `storage`
/// say which), 2 it could not run (bad arguments or configuration).
fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let top = cli.config;
    // `-c FILE` before the command applies to it too (`sniwalk -c FILE check`).
    let config =
        |arg: cli::args::ConfigArg| config_path::choose(arg.config.or(top.clone()).as_deref());
    match cli.command {
        None => run(&config_path::choose(top.as_deref())?),
        Some(Command::Run(args)) => run(&config(args)?),
        Some(Command::Check { config: arg, json }) => check(config(arg), json),
        Some(Command::Resolve {
            config: arg,
            listener,
            json,
            name,
            no_sni,
        }) => resolve(
            &config(arg)?,
            listener.as_deref(),
            name.as_deref(),
            no_sni,
            json,
        ),
        Some(Command::Renew {
            config: arg,
            timeout,
            domain,
        }) => renew(&config(arg)?, &domain, &timeout),
        Some(Command::Status {
            config: arg,
            admin,
            json,
        }) => status(&config(arg)?, admin.as_deref(), json),
        Some(Command::TicketKeys {
            command: TicketKeysCommand::Rotate { file, keep },
        }) => {
            let keys = sniwalk::tickets::rotate(&file, keep)?;
            outln!(
                "{}: {} key(s), a new one in front",
                file.display(),
                keys.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Selfsigned {
            name,
            days,
            rsa,
            out,
            force,
        }) => selfsigned(&name, days, rsa, &out, force),
        Some(Command::Pem {
            command:
                PemCommand::Merge {
                    key,
                    cert,
                    chain,
                    out,
                },
        }) => pem_merge(&key, &cert, chain.as_deref(), out.as_deref()),
        Some(Command::Storage { command }) => storage(command, top.as_deref()),
        Some(Command::Completions { shell }) => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sniwalk", &mut text);
            cli::output::out(format_args!("{}", String::from_utf8_lossy(&text)))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => {
            let mut roff = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut roff)?;
            cli::output::out(format_args!("{}", String::from_utf8_lossy(&roff)))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Schema) => {
            let schema = sniwalk::config::json_schema();
            outln!("{}", serde_json::to_string_pretty(&schema)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
