//! Which configuration file a command reads when `--config` is not given
//! (README, "Command line"): `./proxy.yaml` when it exists, else
//! `$SNIWALK_CONFIG`, else `/etc/sniwalk/proxy.yaml` (the Debian
//! package's).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The configuration file in the working directory.
pub(crate) const LOCAL_CONFIG: &str = "proxy.yaml";
/// The environment variable that names a configuration file.
pub(crate) const CONFIG_ENV: &str = "SNIWALK_CONFIG";
/// The packaged configuration.
pub(crate) const SYSTEM_CONFIG: &str = "/etc/sniwalk/proxy.yaml";

/// The file to read: `explicit` (`--config`/`-c`) as given, else the first
/// of the defaults that applies. With none, an error that names what was
/// tried and how to choose.
pub(crate) fn choose(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
    let chosen = choose_from(explicit, env.as_deref().map(Path::new), |p| p.exists())?;
    // Working in a folder with a proxy.yaml (a checkout of sniwalk ships
    // one) while $SNIWALK_CONFIG names another file: say which one is read.
    if explicit.is_none()
        && let Some(env) = &env
        && chosen != Path::new(env)
    {
        let _ = writeln!(
            std::io::stderr(),
            "sniwalk: reading ./{LOCAL_CONFIG}, which is here; {CONFIG_ENV}={} applies only \
             where there is none (pass --config to choose)",
            Path::new(env).display()
        );
    }
    Ok(chosen)
}

/// [`choose`] with the environment and the file system passed in.
fn choose_from(
    explicit: Option<&Path>,
    env: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if exists(Path::new(LOCAL_CONFIG)) {
        return Ok(PathBuf::from(LOCAL_CONFIG));
    }
    // A variable that is set is a choice: used even when its file is
    // missing, so the error names that file rather than another one.
    if let Some(path) = env {
        return Ok(path.to_path_buf());
    }
    if exists(Path::new(SYSTEM_CONFIG)) {
        return Ok(PathBuf::from(SYSTEM_CONFIG));
    }
    anyhow::bail!(
        "no configuration file: ./{LOCAL_CONFIG} does not exist, {CONFIG_ENV} is not set and \
         {SYSTEM_CONFIG} does not exist; pass --config FILE (or -c FILE)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_flag_then_local_then_environment_then_system() {
        let all = |_: &Path| true;
        let none = |_: &Path| false;
        let only_system = |p: &Path| p == Path::new(SYSTEM_CONFIG);
        let flag = Some(Path::new("given.yaml"));
        let env = Some(Path::new("/srv/env.yaml"));
        assert_eq!(
            choose_from(flag, env, all).unwrap(),
            Path::new("given.yaml")
        );
        assert_eq!(
            choose_from(None, env, all).unwrap(),
            Path::new(LOCAL_CONFIG)
        );
        assert_eq!(
            choose_from(None, env, only_system).unwrap(),
            Path::new("/srv/env.yaml")
        );
        assert_eq!(
            choose_from(None, env, none).unwrap(),
            Path::new("/srv/env.yaml")
        );
        assert_eq!(
            choose_from(None, None, only_system).unwrap(),
            Path::new(SYSTEM_CONFIG)
        );
        let error = choose_from(None, None, none).unwrap_err().to_string();
        assert!(
            error.contains("--config FILE") && error.contains(CONFIG_ENV),
            "{error}"
        );
    }
}
