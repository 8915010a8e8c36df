//! The domain tree: which configured domain's certificate answers a name.
//!
//! The tree is implied by the names (README, "How a certificate is chosen"): a domain's
//! parent is its nearest DNS ancestor that is also configured, and the master
//! domain is the root of every chain, also of domains not under it. For a
//! name `n` a lookup
//!
//! 1. takes `n`, then each parent name of `n`, and stops at the first one
//!    that is a configured domain, or else starts at the master;
//! 2. answers the first domain with a certificate on the way up to the
//!    master. That answer is precomputed per domain when the tree is built
//!    (its "effective" certificate owner), so a lookup costs at most one hash
//!    probe per label of `n` and never grows with the number of domains;
//! 3. answers nothing when no domain on the chain has a certificate; the
//!    caller then falls back to the listener's certdir and the default.
//!
//! A domain that lists `names` (README, "How a certificate is chosen" and "DNS-01 and wildcards")
//! also answers each listed name, and each name one label below a listed
//! wildcard `*.x`; it answers no other name below it: for those, the walk
//! starts at its parent instead (a wildcard covers one label, RFC 6125
//! §6.4.3, so `x.y.tenant.example` is not given `*.tenant.example`). An
//! exact configured domain comes first, then a listed name, then a
//! wildcard, then the walk up. The extra probes happen only when some
//! domain lists names.
//!
//! Pure: no I/O, no locks, and [`DomainTree::walk`] does not allocate.

use std::collections::HashMap;

/// The index's hasher: foldhash is several times faster than SipHash on
/// short names and still randomly seeded per process, and the keys are
/// configured names, never chosen by clients.
type NameHasher = foldhash::fast::RandomState;

/// Index of a domain in the tree (its position in the list it was built from).
pub type DomainId = u32;

/// Longest DNS name we look up; longer SNI names cannot be configured.
const MAX_NAME_LEN: usize = 253;

/// A configured domain as the tree needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainSpec<'a> {
    /// Lower-case name without a trailing dot.
    pub name: &'a str,
    /// Whether the domain has a certificate of its own that loaded.
    pub has_certificate: bool,
    /// The names its certificate covers (`names`), wildcards `*.x`
    /// included; empty for a domain that answers every name below it.
    pub names: &'a [String],
}

/// How a lookup reached the domain whose certificate it answers, named as in
/// logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The name itself is a domain with a certificate.
    Exact,
    /// A domain between the name and the master has the certificate.
    Ancestor,
    /// The master domain's certificate.
    Master,
    /// The name is one of a domain's listed `names`, or one label below a
    /// listed wildcard, and that domain has the certificate.
    Listed,
    /// No domain on the chain has one: the listener's certdir.
    Certdir,
    /// Neither: the default certificate.
    Default,
}

impl Step {
    /// The lower-case label used in logs, metrics and `resolve` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Exact => "exact",
            Step::Ancestor => "ancestor",
            Step::Master => "master",
            Step::Listed => "listed",
            Step::Certdir => "certdir",
            Step::Default => "default",
        }
    }
}

/// The answer of a walk through the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// The domain whose certificate applies, if any on the chain has one.
    pub owner: Option<DomainId>,
    /// How the owner was reached; `Certdir` when there is no owner (the
    /// caller decides between certdir and default).
    pub step: Step,
}

/// One domain's links.
#[derive(Debug, Clone)]
struct Node {
    parent: Option<DomainId>,
    effective: Option<DomainId>,
    /// Where a walk for a name below this domain that it does not list
    /// starts: itself, or for a domain with `names`, its nearest ancestor
    /// without them (the master at the latest).
    below: DomainId,
}

/// The immutable tree of configured domains.
#[derive(Debug, Clone)]
pub struct DomainTree {
    /// Name to id; keys borrowed by `walk` as `&str`, so no allocation.
    index: HashMap<Box<str>, DomainId, NameHasher>,
    names: Vec<Box<str>>,
    nodes: Vec<Node>,
    master: DomainId,
    /// Listed names that are not a configured domain's own name.
    listed: HashMap<Box<str>, DomainId, NameHasher>,
    /// Listed wildcards `*.x`, keyed by `x`.
    wildcards: HashMap<Box<str>, DomainId, NameHasher>,
}

/// Why a tree could not be built; the configuration layer prevents both, so
/// these only guard programming errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The master domain is not among the domains.
    #[error("the master domain `{0}` is not among the configured domains")]
    MasterMissing(String),
    /// The same name appears twice.
    #[error("the domain `{0}` is configured twice")]
    Duplicate(String),
    /// A listed name belongs to two domains.
    #[error("the name `{0}` is listed by two domains")]
    ListedTwice(String),
    /// More domains than a `DomainId` can count.
    #[error("too many domains ({0})")]
    TooMany(usize),
}

impl DomainTree {
    /// Builds the tree: parent links, then each domain's effective
    /// certificate owner (its own, else its parent's effective one).
    pub fn build(domains: &[DomainSpec<'_>], master: &str) -> Result<Self, TreeError> {
        let count = domains.len();
        if count > DomainId::MAX as usize {
            return Err(TreeError::TooMany(count));
        }
        let mut index: HashMap<Box<str>, DomainId, NameHasher> =
            HashMap::with_capacity_and_hasher(count, NameHasher::default());
        let mut names = Vec::with_capacity(count);
        for (i, spec) in domains.iter().enumerate() {
            let name: Box<str> = spec.name.into();
            if index.insert(name.clone(), i as DomainId).is_some() {
                return Err(TreeError::Duplicate(spec.name.to_string()));
            }
            names.push(name);
        }
        let Some(&master_id) = index.get(master) else {
            return Err(TreeError::MasterMissing(master.to_string()));
        };
        let mut nodes: Vec<Node> = domains
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let id = i as DomainId;
                let parent = if id == master_id {
                    None
                } else {
                    Some(nearest_configured_ancestor(&index, spec.name).unwrap_or(master_id))
                };
                Node {
                    parent,
                    effective: None,
                    below: id,
                }
            })
            .collect();
        let (listed, wildcards) = listed_names(domains, &index)?;
        for i in 0..count {
            let mut below = i as DomainId;
            while below != master_id && !domains[below as usize].names.is_empty() {
                below = nodes[below as usize].parent.unwrap_or(master_id);
            }
            nodes[i].below = below;
        }
        // What a domain without a certificate inherits: its parent's, unless
        // the parent lists `names` that do not cover it (then from where a
        // walk below the parent starts).
        let inherit: Vec<Option<DomainId>> = (0..count)
            .map(|i| {
                let parent = nodes[i].parent?;
                let p = parent as usize;
                let covered = |name: &str| {
                    listed.get(name) == Some(&parent)
                        || name
                            .split_once('.')
                            .is_some_and(|(_, base)| wildcards.get(base) == Some(&parent))
                };
                if parent != master_id && !domains[p].names.is_empty() && !covered(domains[i].name)
                {
                    Some(nodes[p].below)
                } else {
                    Some(parent)
                }
            })
            .collect();
        // Parents before children: resolve each chain once, upward until a
        // known answer, then fill the answer back down the path.
        let mut resolved = vec![false; count];
        let mut path = Vec::new();
        for start in 0..count {
            let mut cursor = Some(start as DomainId);
            let mut answer = None;
            while let Some(id) = cursor {
                let i = id as usize;
                if resolved[i] {
                    answer = nodes[i].effective;
                    break;
                }
                if domains[i].has_certificate {
                    answer = Some(id);
                    resolved[i] = true;
                    nodes[i].effective = answer;
                    break;
                }
                path.push(i);
                cursor = inherit[i];
            }
            for i in path.drain(..) {
                nodes[i].effective = answer;
                resolved[i] = true;
            }
        }
        Ok(Self {
            index,
            names,
            nodes,
            master: master_id,
            listed,
            wildcards,
        })
    }

    /// Walks from `name` to the domain whose certificate answers it.
    ///
    /// `name` may carry a trailing dot or upper case; both are handled
    /// without allocating (upper case is lowered into a stack buffer).
    pub fn walk(&self, name: &str) -> Walk {
        let name = name.strip_suffix('.').unwrap_or(name);
        // No configured name is longer than MAX_NAME_LEN, so a longer name
        // can only match a parent name: start at the first one that fits,
        // which also fits the stack buffer whatever its case (the answer
        // must not depend on case; found by fuzz/fuzz_targets/names.rs).
        let mut lookup = name;
        while lookup.len() > MAX_NAME_LEN {
            match lookup.find('.') {
                Some(dot) => lookup = &lookup[dot + 1..],
                None => return self.answer(self.master, name),
            }
        }
        let mut lowered = [0u8; MAX_NAME_LEN];
        let lookup = if lookup.bytes().any(|b| b.is_ascii_uppercase()) {
            let buf = &mut lowered[..lookup.len()];
            buf.copy_from_slice(lookup.as_bytes());
            buf.make_ascii_lowercase();
            // Lower-casing ASCII bytes keeps UTF-8 valid; fall back to the
            // master on the impossible error rather than panic.
            match std::str::from_utf8(buf) {
                Ok(s) => s,
                Err(_) => return self.answer(self.master, name),
            }
        } else {
            lookup
        };
        // A shortened name is never an exact match: compare the whole one.
        let whole = if lookup.len() == name.len() {
            lookup
        } else {
            name
        };
        let ancestor = if lookup.len() == name.len() {
            if let Some(&id) = self.index.get(lookup) {
                return self.answer(id, whole);
            }
            if let Some(id) = self.listed_owner(lookup)
                && self.nodes[id as usize].effective == Some(id)
            {
                return Walk {
                    owner: Some(id),
                    step: Step::Listed,
                };
            }
            // Listed, but its certificate is not there (yet): the name's
            // own chain.
            self.nearest_above(lookup)
        } else {
            // `lookup` is already a parent name of `name`.
            self.index
                .get(lookup)
                .copied()
                .or_else(|| self.nearest_above(lookup))
        };
        let from = ancestor.map_or(self.master, |id| self.nodes[id as usize].below);
        self.answer(from, whole)
    }

    /// The domain that lists `name`, or a wildcard one label above it.
    fn listed_owner(&self, name: &str) -> Option<DomainId> {
        if self.listed.is_empty() && self.wildcards.is_empty() {
            return None;
        }
        if let Some(&id) = self.listed.get(name) {
            return Some(id);
        }
        let parent = &name[name.find('.')? + 1..];
        self.wildcards.get(parent).copied()
    }

    /// The answer for `name` once the walk starts at the configured domain
    /// `from`: its precomputed effective owner.
    fn answer(&self, from: DomainId, name: &str) -> Walk {
        let owner = self.nodes[from as usize].effective;
        let step = match owner {
            None => Step::Certdir,
            Some(id) if id == self.master => {
                if &*self.names[id as usize] == name {
                    Step::Exact
                } else {
                    Step::Master
                }
            }
            Some(id) if &*self.names[id as usize] == name => Step::Exact,
            Some(_) => Step::Ancestor,
        };
        Walk { owner, step }
    }

    /// The first configured domain among the parent names of `name`
    /// (`name` itself was looked up already).
    fn nearest_above(&self, name: &str) -> Option<DomainId> {
        let mut suffix = &name[name.find('.')? + 1..];
        loop {
            if let Some(&id) = self.index.get(suffix) {
                return Some(id);
            }
            suffix = &suffix[suffix.find('.')? + 1..];
        }
    }

    /// The names tried by a lookup of `name`, in order, with the configured
    /// ones marked: for `sniwalk resolve`, not for the handshake path.
    pub fn explain(&self, name: &str) -> Vec<(String, Option<DomainId>)> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !self.index.contains_key(name.as_str())
            && let Some(id) = self.listed_owner(&name)
            && self.nodes[id as usize].effective == Some(id)
        {
            return vec![(name, Some(id))];
        }
        let mut tried = Vec::new();
        let mut suffix = name.as_str();
        loop {
            let hit = self.index.get(suffix).copied();
            tried.push((suffix.to_string(), hit));
            if hit.is_some() {
                break;
            }
            match suffix.find('.') {
                Some(dot) => suffix = &suffix[dot + 1..],
                None => break,
            }
        }
        tried
    }

    /// The domain whose chain a lookup of `name` walks up (lower-cased,
    /// without a trailing dot): for `sniwalk resolve`, not for handshakes.
    pub fn start(&self, name: &str) -> DomainId {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        if let Some(id) = self.listed_owner(name)
            && self.nodes[id as usize].effective == Some(id)
        {
            return id;
        }
        self.nearest_above(name)
            .map_or(self.master, |id| self.nodes[id as usize].below)
    }

    /// The chain from `id` up to the master, `id` first.
    pub fn chain(&self, id: DomainId) -> Vec<DomainId> {
        let mut out = vec![id];
        let mut cursor = self.nodes[id as usize].parent;
        while let Some(parent) = cursor {
            out.push(parent);
            cursor = self.nodes[parent as usize].parent;
        }
        out
    }

    /// The id of a configured domain.
    pub fn id(&self, name: &str) -> Option<DomainId> {
        self.index.get(name).copied()
    }

    /// The name of a domain.
    pub fn name(&self, id: DomainId) -> &str {
        &self.names[id as usize]
    }

    /// The master domain's id.
    pub fn master(&self) -> DomainId {
        self.master
    }

    /// A domain's parent (`None` for the master).
    pub fn parent(&self, id: DomainId) -> Option<DomainId> {
        self.nodes[id as usize].parent
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree has no domains (never true for a built tree, which
    /// holds at least the master).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The listed names (other than the domains' own) and the wildcards'
/// bases, each with the domain that lists it.
#[allow(clippy::type_complexity)]
fn listed_names(
    domains: &[DomainSpec<'_>],
    index: &HashMap<Box<str>, DomainId, NameHasher>,
) -> Result<
    (
        HashMap<Box<str>, DomainId, NameHasher>,
        HashMap<Box<str>, DomainId, NameHasher>,
    ),
    TreeError,
> {
    let mut listed: HashMap<Box<str>, DomainId, NameHasher> = HashMap::default();
    let mut wildcards: HashMap<Box<str>, DomainId, NameHasher> = HashMap::default();
    for (i, spec) in domains.iter().enumerate() {
        let id = i as DomainId;
        for name in spec.names {
            let (map, key) = match name.strip_prefix("*.") {
                Some(base) => (&mut wildcards, base),
                None if index.get(name.as_str()) == Some(&id) => continue,
                None if index.contains_key(name.as_str()) => {
                    return Err(TreeError::ListedTwice(name.clone()));
                }
                None => (&mut listed, name.as_str()),
            };
            match map.insert(key.into(), id) {
                Some(other) if other != id => return Err(TreeError::ListedTwice(name.clone())),
                _ => {}
            }
        }
    }
    Ok((listed, wildcards))
}

/// The nearest strict DNS ancestor of `name` that is configured.
fn nearest_configured_ancestor(
    index: &HashMap<Box<str>, DomainId, NameHasher>,
    name: &str,
) -> Option<DomainId> {
    let mut suffix = name;
    while let Some(dot) = suffix.find('.') {
        suffix = &suffix[dot + 1..];
        if let Some(&id) = index.get(suffix) {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the README ("How a certificate is chosen")
    /// plus the cases around it.
    /// (name, has certificate)
    const DOMAINS: &[(&str, bool)] = &[
        ("example.com", true),
        ("t1.example.com", true),
        ("t2.example.com", false),
        ("a.t2.example.com", true),
        ("deep.t2.example.com", false),
        ("customer.org", false),
        ("shop.customer.org", true),
    ];

    fn tree(domains: &[(&str, bool)], master: &str) -> DomainTree {
        let specs: Vec<DomainSpec<'_>> = domains
            .iter()
            .map(|&(name, has_certificate)| DomainSpec {
                name,
                has_certificate,
                names: &[],
            })
            .collect();
        DomainTree::build(&specs, master).expect("test tree builds")
    }

    /// (SNI, owner expected, step expected)
    const WALKS: &[(&str, Option<&str>, Step)] = &[
        ("t1.example.com", Some("t1.example.com"), Step::Exact),
        ("x.t1.example.com", Some("t1.example.com"), Step::Ancestor),
        ("t2.example.com", Some("example.com"), Step::Master),
        (
            "b.a.t2.example.com",
            Some("a.t2.example.com"),
            Step::Ancestor,
        ),
        ("other.org", Some("example.com"), Step::Master),
        ("example.com", Some("example.com"), Step::Exact),
        ("T1.Example.COM", Some("t1.example.com"), Step::Exact),
        ("t1.example.com.", Some("t1.example.com"), Step::Exact),
        ("x.y.deep.t2.example.com", Some("example.com"), Step::Master),
        ("customer.org", Some("example.com"), Step::Master),
        ("shop.customer.org", Some("shop.customer.org"), Step::Exact),
        (
            "www.shop.customer.org",
            Some("shop.customer.org"),
            Step::Ancestor,
        ),
        ("com", Some("example.com"), Step::Master),
        ("", Some("example.com"), Step::Master),
        ("..", Some("example.com"), Step::Master),
    ];

    #[test]
    fn worked_examples() {
        let t = tree(DOMAINS, "example.com");
        for &(sni, owner, step) in WALKS {
            let walk = t.walk(sni);
            assert_eq!(walk.owner.map(|id| t.name(id)), owner, "owner for {sni:?}");
            assert_eq!(walk.step, step, "step for {sni:?}");
        }
    }

    #[test]
    fn master_without_certificate_gives_no_owner_outside_certified_subtrees() {
        let mut domains = DOMAINS.to_vec();
        domains[0].1 = false;
        let t = tree(&domains, "example.com");
        for (sni, owner) in [
            ("t2.example.com", None),
            ("other.org", None),
            ("example.com", None),
            ("t1.example.com", Some("t1.example.com")),
            ("z.a.t2.example.com", Some("a.t2.example.com")),
        ] {
            let walk = t.walk(sni);
            assert_eq!(walk.owner.map(|id| t.name(id)), owner, "owner for {sni}");
            if owner.is_none() {
                assert_eq!(walk.step, Step::Certdir);
            }
        }
    }

    #[test]
    fn parents_follow_names_and_end_at_master() {
        let t = tree(DOMAINS, "example.com");
        let parent = |n: &str| t.parent(t.id(n).expect("configured")).map(|p| t.name(p));
        assert_eq!(parent("example.com"), None);
        assert_eq!(parent("t1.example.com"), Some("example.com"));
        assert_eq!(parent("a.t2.example.com"), Some("t2.example.com"));
        assert_eq!(parent("customer.org"), Some("example.com"));
        assert_eq!(parent("shop.customer.org"), Some("customer.org"));
        let chain: Vec<&str> = t
            .chain(t.id("deep.t2.example.com").expect("configured"))
            .into_iter()
            .map(|id| t.name(id))
            .collect();
        assert_eq!(
            chain,
            ["deep.t2.example.com", "t2.example.com", "example.com"]
        );
    }

    #[test]
    fn master_below_another_domain_is_still_the_root() {
        // The master is the root even when a configured name is its DNS parent.
        let t = tree(
            &[
                ("corp.test", true),
                ("app.corp.test", true),
                ("x.app.corp.test", false),
            ],
            "app.corp.test",
        );
        assert_eq!(t.parent(t.id("app.corp.test").expect("configured")), None);
        assert_eq!(t.walk("corp.test").step, Step::Exact);
        let walk = t.walk("x.app.corp.test");
        assert_eq!(walk.owner.map(|id| t.name(id)), Some("app.corp.test"));
        assert_eq!(walk.step, Step::Master);
    }

    #[test]
    fn explain_lists_names_tried() {
        let t = tree(DOMAINS, "example.com");
        let tried: Vec<(String, bool)> = t
            .explain("b.a.t2.example.com")
            .into_iter()
            .map(|(n, hit)| (n, hit.is_some()))
            .collect();
        assert_eq!(
            tried,
            [
                ("b.a.t2.example.com".to_string(), false),
                ("a.t2.example.com".to_string(), true)
            ]
        );
        assert_eq!(t.explain("other.org").len(), 2);
    }

    #[test]
    fn duplicate_and_missing_master_are_errors() {
        let dup = [DomainSpec {
            name: "a.test",
            has_certificate: false,
            names: &[],
        }; 2];
        assert!(matches!(
            DomainTree::build(&dup, "a.test"),
            Err(TreeError::Duplicate(_))
        ));
        let one = [DomainSpec {
            name: "a.test",
            has_certificate: false,
            names: &[],
        }];
        assert!(matches!(
            DomainTree::build(&one, "b.test"),
            Err(TreeError::MasterMissing(_))
        ));
    }

    /// `names`: listed names and one label below a wildcard get the
    /// listing domain's certificate; other names below it walk on to its
    /// parent; exact configured domains come first.
    #[test]
    fn listed_names_and_wildcards() {
        let listed = [
            "tenant.example".to_string(),
            "*.tenant.example".to_string(),
            "phone.customer.org".to_string(),
        ];
        let none: &[String] = &[];
        let spec = |name, has_certificate, names| DomainSpec {
            name,
            has_certificate,
            names,
        };
        let domains = [
            spec("example.com", true, none),
            spec("tenant.example", true, &listed),
            spec("own.tenant.example", true, none),
            spec("bare.tenant.example", false, none),
        ];
        let t = DomainTree::build(&domains, "example.com").expect("builds");
        let owner = |sni: &str| {
            let walk = t.walk(sni);
            (walk.owner.map(|id| t.name(id).to_string()), walk.step)
        };
        let tenant = Some("tenant.example".to_string());
        let master = Some("example.com".to_string());
        assert_eq!(owner("tenant.example"), (tenant.clone(), Step::Exact));
        assert_eq!(owner("a.tenant.example"), (tenant.clone(), Step::Listed));
        assert_eq!(owner("B.Tenant.Example."), (tenant.clone(), Step::Listed));
        assert_eq!(owner("phone.customer.org"), (tenant.clone(), Step::Listed));
        // A wildcard covers one label (RFC 6125 §6.4.3).
        assert_eq!(owner("x.y.tenant.example"), (master.clone(), Step::Master));
        assert_eq!(
            owner("x.phone.customer.org"),
            (master.clone(), Step::Master)
        );
        // A configured domain wins over the wildcard, also below it.
        assert_eq!(
            owner("own.tenant.example"),
            (Some("own.tenant.example".into()), Step::Exact)
        );
        assert_eq!(
            owner("x.own.tenant.example"),
            (Some("own.tenant.example".into()), Step::Ancestor)
        );
        // A configured domain without a certificate inherits from its parent.
        assert_eq!(
            owner("bare.tenant.example"),
            (tenant.clone(), Step::Ancestor)
        );
        assert_eq!(t.start("x.y.tenant.example"), t.master());
        assert_eq!(t.start("a.tenant.example"), 1);
        assert_eq!(
            t.explain("a.tenant.example"),
            [("a.tenant.example".into(), Some(1))]
        );

        // Before its certificate is there, a listed name gets what the
        // chain gives.
        let pending = [
            spec("example.com", true, none),
            spec("tenant.example", false, &listed),
        ];
        let t = DomainTree::build(&pending, "example.com").expect("builds");
        assert_eq!(t.walk("a.tenant.example").step, Step::Master);

        // A configured domain without a certificate below a listing domain
        // inherits it only when listed; names below it walk on from there.
        let domains = [
            spec("example.com", true, none),
            spec("tenant.example", true, &listed),
            spec("one.tenant.example", false, none),
            spec("a.b.tenant.example", false, none),
            spec("customer.org", true, none),
        ];
        let t = DomainTree::build(&domains, "example.com").expect("builds");
        let owner = |sni: &str| t.walk(sni).owner.map(|id| t.name(id).to_string());
        assert_eq!(owner("one.tenant.example"), tenant);
        assert_eq!(owner("a.b.tenant.example"), master);
        assert_eq!(owner("x.a.b.tenant.example"), master);
        assert_eq!(owner("phone.customer.org"), tenant);
        // The listing domain without its certificate: the name's own chain.
        let domains = [
            spec("example.com", true, none),
            spec("tenant.example", false, &listed),
            spec("customer.org", true, none),
        ];
        let t = DomainTree::build(&domains, "example.com").expect("builds");
        let walk = t.walk("phone.customer.org");
        assert_eq!(walk.owner.map(|id| t.name(id)), Some("customer.org"));
        assert_eq!(walk.step, Step::Ancestor);

        // One name, two domains: refused.
        let twice = ["phone.customer.org".to_string()];
        let clash = [
            spec("example.com", true, &twice),
            spec("tenant.example", true, &listed),
        ];
        assert!(matches!(
            DomainTree::build(&clash, "example.com"),
            Err(TreeError::ListedTwice(_))
        ));
    }

    #[test]
    fn overlong_upper_case_name_goes_to_master() {
        let t = tree(DOMAINS, "example.com");
        let long = "A".repeat(300);
        assert_eq!(t.walk(&long).step, Step::Master);
    }

    /// Found by fuzz/fuzz_targets/names.rs: a name longer than 253 bytes
    /// below a configured domain went to the master when it had an upper
    /// case letter, and to the domain when it had none.
    #[test]
    fn overlong_names_answer_the_same_in_any_case() {
        let t = tree(DOMAINS, "example.com");
        let lower = format!("{}t1.example.com", "ab.".repeat(90));
        let upper = lower.to_ascii_uppercase();
        assert!(upper.len() > MAX_NAME_LEN);
        let shop = format!("{}shop.customer.org.", "x.".repeat(130));
        for name in [&lower, &upper, &shop, &shop.to_ascii_uppercase()] {
            let walk = t.walk(name);
            assert_eq!(walk.step, Step::Ancestor, "step for {name}");
            assert_eq!(walk, t.walk(&name.to_ascii_lowercase()), "walk of {name}");
        }
        assert_eq!(t.name(t.walk(&upper).owner.unwrap()), "t1.example.com");
        assert_eq!(t.name(t.walk(&shop).owner.unwrap()), "shop.customer.org");
    }
}
