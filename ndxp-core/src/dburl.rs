//! Database URLs as NDXP configuration files write them: `sqlite://PATH`
//! (or `sqlite:PATH`, `sqlite::memory:`) for the embedded default and
//! `postgres://...` for several processes sharing one database. Pure string
//! handling, shared by every storage backend so they accept the same URLs
//! and never log a password.
//!
//! ```
//! use ndxp_core::dburl::{self, Backend};
//! let u = dburl::parse("sqlite://data/registry.db")?;
//! assert_eq!(u.backend, Backend::Sqlite);
//! assert_eq!(u.connect_url, "sqlite://data/registry.db?mode=rwc");
//! assert_eq!(dburl::redact("postgres://ndxp:secret@db/ndxp"), "postgres://ndxp:***@db/ndxp");
//! # Ok::<(), ndxp_core::dburl::UnsupportedUrl>(())
//! ```

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A database URL, ready to hand to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The database kind.
    pub backend: Backend,
    /// The URL to connect with: SQLite files get `mode=rwc` (created if
    /// missing) unless a mode is given.
    pub connect_url: String,
    /// An in-memory SQLite database, which lives only as long as its one
    /// connection.
    pub in_memory: bool,
}

impl DatabaseUrl {
    /// The file of a SQLite database (`None` for PostgreSQL and in-memory
    /// databases).
    pub fn sqlite_file(&self) -> Option<&str> {
        if self.backend != Backend::Sqlite || self.in_memory {
            return None;
        }
        let rest = self
            .connect_url
            .strip_prefix("sqlite://")
            .unwrap_or(&self.connect_url);
        rest.split('?').next().filter(|p| !p.is_empty())
    }

    /// Whether opening creates a missing SQLite file (`mode=rwc`).
    pub fn creates_file(&self) -> bool {
        self.sqlite_file().is_some() && self.connect_url.contains("mode=rwc")
    }
}

/// A URL that names no supported database; holds the URL without its
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported database URL {0:?}; use sqlite://PATH or postgres://USER@HOST/DB")]
pub struct UnsupportedUrl(pub String);

/// Classifies a database URL.
pub fn parse(url: &str) -> Result<DatabaseUrl, UnsupportedUrl> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if rest.is_empty() {
            return Err(UnsupportedUrl(url.to_string()));
        }
        let connect_url = if rest == ":memory:" {
            "sqlite::memory:".to_string()
        } else if rest.contains("mode=") {
            format!("sqlite://{rest}")
        } else if rest.contains('?') {
            format!("sqlite://{rest}&mode=rwc")
        } else {
            format!("sqlite://{rest}?mode=rwc")
        };
        let in_memory = connect_url.contains(":memory:");
        Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            connect_url,
            in_memory,
        })
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseUrl {
            backend: Backend::Postgres,
            connect_url: url.to_string(),
            in_memory: false,
        })
    } else {
        Err(UnsupportedUrl(redact(url)))
    }
}

/// The URL with its password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = auth.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                return format!("{scheme}://{user}:***@{host}{tail}");
            }
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn sqlite_files_are_named_and_creation_is_known() {
        let u = parse("sqlite:///var/lib/ndxp/log.db").unwrap();
        assert_eq!(u.sqlite_file(), Some("/var/lib/ndxp/log.db"));
        assert!(u.creates_file());
        let ro = parse("sqlite://x.db?mode=ro").unwrap();
        assert_eq!((ro.sqlite_file(), ro.creates_file()), (Some("x.db"), false));
        assert_eq!(parse("sqlite::memory:").unwrap().sqlite_file(), None);
        assert_eq!(parse("postgres://db/ndxp").unwrap().sqlite_file(), None);
    }

    #[test]
    fn urls_are_classified() {
        let m = parse("sqlite::memory:").unwrap();
        assert!(m.in_memory && m.backend == Backend::Sqlite);
        assert_eq!(
            parse("sqlite:x.db?cache=shared").unwrap().connect_url,
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            parse("sqlite://x.db?mode=ro").unwrap().connect_url,
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(
            parse("postgresql://h/db").unwrap().backend,
            Backend::Postgres
        );
        assert!(parse("sqlite:").is_err());
        let e = parse("mysql://u:pw@h/db").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
