//! One way to print an error with its causes: the error's own text, then
//! each `source()` in turn, joined by `": "`.
//!
//! ```
//! use ndxp_core::chain::ErrorChain;
//!
//! #[derive(Debug)]
//! struct Outer(std::io::Error);
//! impl std::fmt::Display for Outer {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("cannot read keys/node.key")
//!     }
//! }
//! impl std::error::Error for Outer {
//!     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
//!         Some(&self.0)
//!     }
//! }
//!
//! let e = Outer(std::io::Error::other("permission denied"));
//! assert_eq!(
//!     ErrorChain(&e).to_string(),
//!     "cannot read keys/node.key: permission denied"
//! );
//! ```

use std::error::Error;
use std::fmt;

/// Displays an error followed by its chain of causes, `": "`-separated.
///
/// A cause whose text the printed text already contains is left out, so an
/// error that writes its source into its own message (`#[error("{0}")]`
/// with `#[source]`) is not printed twice. Trailing white space of each
/// text is dropped. For `anyhow::Error` pass `&*e`.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The whole text is needed to leave out causes it already says.
        let mut text = self.0.to_string().trim_end().to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let t = c.to_string();
            let t = t.trim_end();
            if !t.is_empty() && !text.contains(t) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(t);
            }
            cause = c.source();
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn e(texts: &[&'static str]) -> E {
        let mut it = texts.iter().rev();
        let mut cur = E(it.next().unwrap(), None);
        for t in it {
            cur = E(t, Some(Box::new(cur)));
        }
        cur
    }

    #[test]
    fn prints_every_cause_in_order() {
        let err = e(&["cannot start", "cannot bind 0.0.0.0:443", "address in use"]);
        assert_eq!(
            ErrorChain(&err).to_string(),
            "cannot start: cannot bind 0.0.0.0:443: address in use"
        );
        assert_eq!(ErrorChain(&e(&["alone"])).to_string(), "alone");
    }

    #[test]
    fn leaves_out_causes_already_said_and_trailing_space() {
        let err = e(&["store: row missing", "row missing", "disk\n"]);
        assert_eq!(ErrorChain(&err).to_string(), "store: row missing: disk");
        let empty = e(&["", "cause"]);
        assert_eq!(ErrorChain(&empty).to_string(), "cause");
    }
}
