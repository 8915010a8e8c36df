//! Host names: `normalize_domain_name` (configured and admin names) and the
//! domain tree walk that picks a certificate for an SNI name.
//!
//! Input: lines. `+name` configures a domain with a certificate, `=name` one
//! without (the first is the master); every other line is a name to walk,
//! as a client would send it. The walk is checked against a plain
//! reference implementation of the resolution rules (README, "How a
//! certificate is chosen").
#![no_main]

use libfuzzer_sys::fuzz_target;
use sniwalk::config::normalize_domain_name;
use sniwalk::tree::{DomainId, DomainSpec, DomainTree, Step, Walk};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut configured: Vec<(String, bool)> = Vec::new();
    let mut lookups: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let (has_certificate, raw) = match line.split_at_checked(1) {
            Some(("+", rest)) => (true, rest),
            Some(("=", rest)) => (false, rest),
            _ => {
                lookups.push(line);
                continue;
            }
        };
        if let Ok(name) = normalize_domain_name(raw) {
            assert_eq!(
                normalize_domain_name(&name).as_deref(),
                Ok(name.as_str()),
                "normalize_domain_name is not idempotent"
            );
            assert!(name.len() <= 253 && !name.bytes().any(|b| b.is_ascii_uppercase()));
            if !configured.iter().any(|(n, _)| *n == name) {
                configured.push((name, has_certificate));
            }
        }
        lookups.push(raw);
    }
    if configured.is_empty() {
        configured.push(("example.com".into(), true));
    }
    let specs: Vec<DomainSpec<'_>> = configured
        .iter()
        .map(|(name, has_certificate)| DomainSpec {
            name,
            has_certificate: *has_certificate,
            names: &[],
        })
        .collect();
    let tree = DomainTree::build(&specs, &configured[0].0).expect("distinct names with a master");
    for name in lookups {
        let walk = tree.walk(name);
        assert_eq!(
            walk,
            reference(&tree, &configured, name),
            "walk of {name:?}"
        );
    }
});

/// The resolution rules spelled out with allocations and no precomputation.
fn reference(tree: &DomainTree, configured: &[(String, bool)], name: &str) -> Walk {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let mut start = None;
    let mut suffix = name.as_str();
    loop {
        if let Some(id) = configured.iter().position(|(n, _)| n == suffix) {
            start = Some(id as DomainId);
            break;
        }
        match suffix.find('.') {
            Some(dot) => suffix = &suffix[dot + 1..],
            None => break,
        }
    }
    // Up the chain: a domain's parent is its nearest configured DNS
    // ancestor, else the master; the master has none.
    let master = tree.master();
    let mut cursor = start.unwrap_or(master);
    let owner = loop {
        let (domain, has_certificate) = &configured[cursor as usize];
        if *has_certificate {
            break Some(cursor);
        }
        if cursor == master {
            break None;
        }
        let mut parent = master;
        let mut suffix = domain.as_str();
        while let Some(dot) = suffix.find('.') {
            suffix = &suffix[dot + 1..];
            if let Some(id) = configured.iter().position(|(n, _)| n == suffix) {
                parent = id as DomainId;
                break;
            }
        }
        cursor = parent;
    };
    let step = match owner {
        None => Step::Certdir,
        Some(id) if configured[id as usize].0 == name => Step::Exact,
        Some(id) if id == master => Step::Master,
        Some(_) => Step::Ancestor,
    };
    Walk { owner, step }
}
