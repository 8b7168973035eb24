//! What each Debian package must hold, with which mode and owner
//! (docs/packages.md, "Files and modes"), and the check of a package's
//! file list (`dpkg-deb -c`) against it.

use anyhow::{bail, Context, Result};

/// One file of a package's data archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// As `ls -l` prints it, e.g. `-rw-r-----`.
    pub(crate) mode: String,
    /// `user/group`.
    pub(crate) owner: String,
    pub(crate) size: u64,
    /// `./etc/ndxp/node.toml`.
    pub(crate) path: String,
}

/// The files of a package, as `dpkg-deb -c` lists them.
#[derive(Debug, Default)]
pub(crate) struct Listing(Vec<Entry>);

impl Listing {
    /// Parses `dpkg-deb -c` output: `MODE USER/GROUP SIZE DATE TIME PATH`
    /// a line (a link's `PATH -> TARGET` keeps only the path).
    pub(crate) fn parse(text: &str) -> Result<Listing> {
        let mut entries = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut fields = line.split_whitespace();
            let mut next = |what: &str| {
                fields
                    .next()
                    .with_context(|| format!("dpkg-deb -c line {}: no {what}: {line}", n + 1))
            };
            let mode = next("mode")?.to_string();
            let owner = next("owner")?.to_string();
            let size = next("size")?;
            let size = size
                .parse()
                .with_context(|| format!("dpkg-deb -c line {}: size {size:?}", n + 1))?;
            next("date")?;
            next("time")?;
            let path = next("path")?.to_string();
            if mode.len() != 10 || !owner.contains('/') || !path.starts_with("./") {
                bail!("dpkg-deb -c line {}: not a file entry: {line}", n + 1);
            }
            entries.push(Entry {
                mode,
                owner,
                size,
                path,
            });
        }
        Ok(Listing(entries))
    }

    /// The entry of `path` (`./usr/bin/ndxp-node`).
    pub(crate) fn entry(&self, path: &str) -> Option<&Entry> {
        self.0.iter().find(|e| e.path == path)
    }
}

const EXECUTABLE: &str = "-rwxr-xr-x";
const READABLE: &str = "-rw-r--r--";
/// The configuration: root-owned, readable by the `ndxp` group, which
/// postinst gives it; nobody else.
const CONFIG: &str = "-rw-r-----";

/// The files `package` must hold and their modes.
pub(crate) fn expected(package: &str) -> Result<Vec<(String, &'static str)>> {
    let (config, units, man): (&str, &[&str], &[&str]) = match package {
        "ndxp-gateway" => (
            "gateway.toml",
            &["ndxp-gateway", "ndxp-pki"],
            &["", "-serve", "-pki-init", "-pki-serve", "-members-add"],
        ),
        "ndxp-node" => (
            "node.toml",
            &["ndxp-node"],
            &["", "-serve", "-keys-init", "-register", "-services-add"],
        ),
        other => bail!("no package {other}"),
    };
    let mut files = vec![
        (format!("./usr/bin/{package}"), EXECUTABLE),
        (format!("./etc/ndxp/{config}"), CONFIG),
        (
            format!("./usr/share/bash-completion/completions/{package}"),
            READABLE,
        ),
        (
            format!("./usr/share/zsh/vendor-completions/_{package}"),
            READABLE,
        ),
        (
            format!("./usr/share/fish/vendor_completions.d/{package}.fish"),
            READABLE,
        ),
        (format!("./usr/share/doc/{package}/packages.md"), READABLE),
    ];
    for unit in units {
        files.push((format!("./usr/lib/systemd/system/{unit}.service"), READABLE));
    }
    for page in man {
        files.push((
            format!("./usr/share/man/man1/{package}{page}.1.gz"),
            READABLE,
        ));
    }
    Ok(files)
}

/// Every expected file of `package` is in `listing` with its mode; every
/// entry belongs to root; nothing is writable by others or set-id; the
/// hidden `generate` command has no man page.
pub(crate) fn check(package: &str, listing: &Listing) -> Result<()> {
    let mut problems = Vec::new();
    for (path, mode) in expected(package)? {
        match listing.entry(&path) {
            None => problems.push(format!("{path} is missing")),
            Some(e) if e.mode != mode => {
                problems.push(format!("{path} has mode {}, not {mode}", e.mode));
            }
            Some(_) => {}
        }
    }
    for e in &listing.0 {
        // cargo-deb writes numeric ids (0/0), dpkg-deb names them.
        if e.owner != "root/root" && e.owner != "0/0" {
            problems.push(format!("{} belongs to {}, not root/root", e.path, e.owner));
        }
        let others_write = e.mode.as_bytes().get(8) == Some(&b'w') && !e.mode.starts_with('l');
        if others_write || e.mode.contains(['s', 'S', 't', 'T']) {
            problems.push(format!("{} has mode {}", e.path, e.mode));
        }
        if e.path.contains("-generate") {
            problems.push(format!("{} documents the hidden generate command", e.path));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{package}: {}", problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing with every expected file of `package`, as dpkg-deb
    /// prints it.
    fn complete(package: &str) -> String {
        let mut text = String::from("drwxr-xr-x root/root         0 2026-12-07 19:00 ./\n");
        for (path, mode) in expected(package).unwrap() {
            text.push_str(&format!(
                "{mode} root/root      1234 2026-12-07 19:00 {path}\n"
            ));
        }
        text
    }

    #[test]
    fn a_complete_package_passes() {
        for package in crate::package::PACKAGES {
            let listing = Listing::parse(&complete(package)).unwrap();
            check(package, &listing).unwrap();
            let binary = listing.entry(&format!("./usr/bin/{package}")).unwrap();
            assert_eq!((binary.size, binary.owner.as_str()), (1234, "root/root"));
        }
    }

    #[test]
    fn a_missing_file_or_a_wrong_mode_or_owner_is_named() {
        let text = complete("ndxp-node")
            .lines()
            .filter(|l| !l.ends_with("/ndxp-node.service"))
            .map(|l| {
                if l.ends_with("./etc/ndxp/node.toml") {
                    l.replace(CONFIG, "-rw-r--r--")
                } else if l.ends_with("./usr/bin/ndxp-node") {
                    l.replace("root/root", "ndxp/ndxp")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let e = check("ndxp-node", &Listing::parse(&text).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("./usr/lib/systemd/system/ndxp-node.service is missing"),
            "{e}"
        );
        assert!(
            e.contains("./etc/ndxp/node.toml has mode -rw-r--r--, not -rw-r-----"),
            "{e}"
        );
        assert!(
            e.contains("./usr/bin/ndxp-node belongs to ndxp/ndxp"),
            "{e}"
        );
    }

    #[test]
    fn writable_by_others_set_id_and_the_hidden_command_are_refused() {
        let mut text = complete("ndxp-gateway");
        text.push_str("-rwsr-xr-x root/root 1 2026-12-07 19:00 ./usr/bin/helper\n");
        text.push_str("drwxrwxrwx root/root 0 2026-12-07 19:00 ./var/lib/ndxp/\n");
        text.push_str(
            "-rw-r--r-- root/root 1 2026-12-07 19:00 ./usr/share/man/man1/ndxp-gateway-generate.1.gz\n",
        );
        let e = check("ndxp-gateway", &Listing::parse(&text).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("./usr/bin/helper has mode -rwsr-xr-x"), "{e}");
        assert!(e.contains("./var/lib/ndxp/ has mode drwxrwxrwx"), "{e}");
        assert!(e.contains("documents the hidden generate command"), "{e}");
    }

    #[test]
    fn links_keep_their_path_and_garbage_is_an_error() {
        let l =
            Listing::parse("lrwxrwxrwx root/root 0 2026-12-07 19:00 ./usr/bin/ndxp -> ndxp-node\n")
                .unwrap();
        assert!(l.entry("./usr/bin/ndxp").is_some());
        for bad in [
            "total 12",
            "-rw-r--r-- root/root many 2026-12-07 19:00 ./x",
            "-rw-r--r-- root 1 2026-12-07 19:00 ./x",
            "-rw-r--r-- root/root 1 2026-12-07 19:00 /x",
        ] {
            assert!(Listing::parse(bad).is_err(), "{bad}");
        }
    }
}
