//! `proxy.yaml`: YAML parse and every validation of `Config::parse`, then
//! what the rest of the program relies on in a configuration that passed.
//! Also `state_dir/domains.json`, the other file merged into it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sniwalk::config::{Config, DomainStore, normalize_domain_name};
use sniwalk::tree::{DomainSpec, DomainTree};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, Path::new("/etc/sniwalk/proxy.yaml")) {
        // The snapshot builds its tree from these without re-checking:
        // names canonical, no duplicates, master among them.
        for domain in &config.domains {
            assert_eq!(
                normalize_domain_name(&domain.name).as_deref(),
                Ok(domain.name.as_str())
            );
        }
        let specs: Vec<DomainSpec<'_>> = config
            .domains
            .iter()
            .map(|d| DomainSpec {
                name: &d.name,
                has_certificate: false,
                names: &d.names,
            })
            .collect();
        if let Err(e) = DomainTree::build(&specs, &config.master_domain) {
            panic!("a valid configuration gave no domain tree: {e}");
        }
        let mut names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "two listeners with one name passed");
    }
    // domains.json is read with serde_json, then every name is checked.
    if let Ok(store) = serde_json::from_str::<DomainStore>(text) {
        for name in store.domains.keys() {
            let _ = normalize_domain_name(name);
        }
    }
});
