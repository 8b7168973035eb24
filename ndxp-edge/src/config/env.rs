//! Environment overrides: `NDXP_<SECTION>__<KEY>=value` sets `key` of
//! `[section]` on top of the configuration file.
//!
//! - The name after `NDXP_` is split on `__`; each part, lower-cased, is a
//!   key (`NDXP_REGISTRY__DATABASE_URL` is `registry.database_url`,
//!   `NDXP_GATEWAY__FORWARD_HEADERS__0__SERVICE` is
//!   `gateway.forward_headers[0].service`: a number is an index into an
//!   array of tables, at most its length, which appends a table).
//! - A top-level key is written with a leading `_`: `NDXP__INSTANCE`.
//! - A name without `__` (`NDXP_CONFIG`, `NDXP_LOG`, `NDXP_TEST_...`) is
//!   not an override.
//! - The value is typed like the key it replaces: a string stays the
//!   text as given; an integer, a float or a boolean (`true`/`false`) must
//!   parse as one; a list is a TOML array (`["a", "b"]`) or items
//!   separated by commas. For a key the file does not set, the value is
//!   read as a TOML value (`42`, `true`, `["a"]`) and otherwise taken as
//!   text; [`super::load`] takes it as text (or a comma-separated list)
//!   after all when the key turns out to want that.

use std::ffi::OsString;
use std::fmt;

use toml::Value;

/// The prefix of every override.
pub const PREFIX: &str = "NDXP_";

/// One step of an override's path: a key of a table or an index into an
/// array of tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key, lower case.
    Key(String),
    /// An index into an array of tables.
    Index(usize),
}

/// A dotted path of keys, as the configuration pages write them:
/// `gateway.forward_headers[0].service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One `NDXP_...` variable that sets a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The variable's name, for messages.
    pub var: String,
    /// The key it sets.
    pub path: KeyPath,
    /// The value as given (never shown in messages: it may be a secret).
    pub raw: String,
}

/// Why an environment variable cannot be applied. The value is never part
/// of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {reason}")]
pub struct EnvError {
    /// The variable.
    pub var: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// The overrides found in an environment, in name order (so that the
/// result does not depend on the order the system lists them in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    items: Vec<Override>,
}

impl Overrides {
    /// No overrides.
    pub fn none() -> Self {
        Self::default()
    }

    /// The overrides in this process's environment.
    ///
    /// # Errors
    /// A variable whose name is malformed or whose value is not UTF-8.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(std::env::vars_os())
    }

    /// The overrides among `vars`; other variables are ignored.
    ///
    /// # Errors
    /// A variable whose name is malformed or whose value is not UTF-8.
    pub fn from_vars<I>(vars: I) -> Result<Self, EnvError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let mut items = Vec::new();
        for (name, value) in vars {
            let Some(name) = name.to_str() else { continue };
            let Some(path) = parse_name(name) else {
                continue;
            };
            let path = path.map_err(|reason| EnvError {
                var: name.to_owned(),
                reason,
            })?;
            let raw = value.into_string().map_err(|_| EnvError {
                var: name.to_owned(),
                reason: "the value is not UTF-8 text".into(),
            })?;
            items.push(Override {
                var: name.to_owned(),
                path,
                raw,
            });
        }
        items.sort_by(|a, b| a.var.cmp(&b.var));
        Ok(Self { items })
    }

    /// The overrides, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Override> {
        self.items.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The key path a variable name sets: `None` when the name is not an
/// override at all, `Some(Err(reason))` when it is one but malformed.
pub fn parse_name(name: &str) -> Option<Result<KeyPath, String>> {
    let rest = name.strip_prefix(PREFIX)?;
    let parts: Vec<&str> = if let Some(top) = rest.strip_prefix('_') {
        if top.contains("__") {
            // `NDXP___A` or `NDXP__A__B`: a leading `_` is only for one
            // top-level key.
            return Some(Err(
                "a name starting with NDXP__ sets one top-level key (NDXP__INSTANCE)".into(),
            ));
        }
        vec![top]
    } else if rest.contains("__") {
        rest.split("__").collect()
    } else {
        return None;
    };
    let mut path = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || part.starts_with('_') || part.ends_with('_') {
            return Some(Err(format!(
                "part {} of the name is empty or starts or ends with `_`; write NDXP_<SECTION>__<KEY>",
                i + 1
            )));
        }
        if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Some(Err(
                "a key name has only letters, digits and `_` (sections are separated by `__`)"
                    .into(),
            ));
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            if i == 0 {
                return Some(Err(
                    "the first part of the name must be a section or key, not a number".into(),
                ));
            }
            match part.parse::<usize>() {
                Ok(n) if n < 100_000 => path.push(Segment::Index(n)),
                _ => return Some(Err("the array index is too large".into())),
            }
        } else {
            path.push(Segment::Key(part.to_ascii_lowercase()));
        }
    }
    Some(Ok(KeyPath(path)))
}

/// How an override's value was typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Typed {
    /// Like a key the file sets.
    LikeFile,
    /// Guessed, for a key the file does not set.
    Guessed,
}

/// Sets `o` in `root`, typed like the value it replaces.
pub(crate) fn apply(root: &mut toml::Table, o: &Override) -> Result<Typed, EnvError> {
    let err = |reason: String| EnvError {
        var: o.var.clone(),
        reason,
    };
    let segs = &o.path.0;
    let Some((last, parents)) = segs.split_last() else {
        return Err(err("names no key".into()));
    };
    let Segment::Key(last) = last else {
        return Err(err(format!(
            "{} names an element of an array; set a key of it (…__{}__KEY)",
            o.path, "N"
        )));
    };
    let mut table = root;
    let mut walked = Vec::new();
    let mut iter = parents.iter().peekable();
    while let Some(seg) = iter.next() {
        walked.push(seg.clone());
        let Segment::Key(k) = seg else {
            return Err(err(format!("{} is not an array", KeyPath(walked))));
        };
        let wants_index = matches!(iter.peek(), Some(Segment::Index(_)));
        if wants_index {
            let Some(Segment::Index(n)) = iter.next() else {
                return Err(err("internal: index expected".into()));
            };
            let entry = table
                .entry(k.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = entry else {
                return Err(err(format!(
                    "{} is not an array of tables",
                    KeyPath(walked.clone())
                )));
            };
            walked.push(Segment::Index(*n));
            if *n == items.len() {
                items.push(Value::Table(toml::Table::new()));
            }
            let len = items.len();
            match items.get_mut(*n) {
                Some(Value::Table(t)) => table = t,
                Some(_) => {
                    return Err(err(format!("{} is not a table", KeyPath(walked))));
                }
                None => {
                    walked.pop();
                    return Err(err(format!(
                        "{} has {len} element(s): the index may be at most {len} (which adds one)",
                        KeyPath(walked)
                    )));
                }
            }
        } else {
            let entry = table
                .entry(k.clone())
                .or_insert_with(|| Value::Table(toml::Table::new()));
            match entry {
                Value::Table(t) => table = t,
                _ => {
                    return Err(err(format!(
                        "{} is a value, not a section",
                        KeyPath(walked)
                    )))
                }
            }
        }
    }
    let (value, typed) = match table.get(last.as_str()) {
        Some(old) => (typed_like(old, &o.raw).map_err(err)?, Typed::LikeFile),
        None => (guess(&o.raw), Typed::Guessed),
    };
    table.insert(last.clone(), value);
    Ok(typed)
}

/// `raw` typed like `old`.
fn typed_like(old: &Value, raw: &str) -> Result<Value, String> {
    let t = raw.trim();
    match old {
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Integer(_) => t
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| "the key is an integer and the value is not one".into()),
        Value::Float(_) => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| "the key is a number and the value is not one".into()),
        Value::Boolean(_) => match t {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err("the key is a boolean: the value must be true or false".into()),
        },
        Value::Array(items) => list(raw, items.first()),
        Value::Datetime(_) => t
            .parse::<toml::value::Datetime>()
            .map(Value::Datetime)
            .map_err(|_| "the key is a date-time and the value is not one".into()),
        Value::Table(_) => {
            Err("the key is a section: set its keys (NDXP_<SECTION>__<KEY>) instead".into())
        }
    }
}

/// A list: a TOML array, or items separated by commas, each typed like
/// `like` (text when there is none).
pub(crate) fn list(raw: &str, like: Option<&Value>) -> Result<Value, String> {
    let t = raw.trim();
    if t.starts_with('[') {
        return match literal(t) {
            Some(v @ Value::Array(_)) => Ok(v),
            _ => Err("the value starts with `[` but is not a TOML array".into()),
        };
    }
    if t.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let items = t
        .split(',')
        .map(|item| match like {
            Some(l @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => {
                typed_like(l, item)
            }
            Some(Value::Table(_) | Value::Array(_)) => {
                Err("the key is a list of tables or lists: write it as a TOML array".into())
            }
            _ => Ok(Value::String(item.trim().to_owned())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(items))
}

/// `raw` read as a TOML value, or else as text.
fn guess(raw: &str) -> Value {
    literal(raw.trim()).unwrap_or_else(|| Value::String(raw.to_owned()))
}

/// `text` as one TOML value (not a table).
fn literal(text: &str) -> Option<Value> {
    if text.contains('\n') {
        return None;
    }
    let mut doc: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    match doc.remove("v")? {
        Value::Table(_) => None,
        v => Some(v),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn path(name: &str) -> String {
        parse_name(name).unwrap().unwrap().to_string()
    }

    #[test]
    fn names_map_to_key_paths() {
        assert_eq!(path("NDXP_REGISTRY__DATABASE_URL"), "registry.database_url");
        assert_eq!(path("NDXP__INSTANCE"), "instance");
        assert_eq!(
            path("NDXP_GATEWAY__FORWARD_HEADERS__0__SERVICE"),
            "gateway.forward_headers[0].service"
        );
        for not_ours in ["NDXP_CONFIG", "NDXP_LOG", "NDXP_TEST_POSTGRES_URL", "PATH"] {
            assert!(parse_name(not_ours).is_none(), "{not_ours}");
        }
        for bad in [
            "NDXP_A____B",
            "NDXP_A__",
            "NDXP_A___B",
            "NDXP__A__B",
            "NDXP_0__A",
            "NDXP_A-B__C",
        ] {
            assert!(parse_name(bad).unwrap().is_err(), "{bad}");
        }
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn set(t: &mut toml::Table, var: &str, raw: &str) -> Result<Typed, EnvError> {
        let o = Override {
            var: var.into(),
            path: parse_name(var).unwrap().unwrap(),
            raw: raw.into(),
        };
        apply(t, &o)
    }

    #[test]
    fn values_are_typed_like_the_key_they_replace() {
        let mut t = table("[a]\nn = 1\nf = 1.5\nb = false\ns = \"x\"\nl = [\"p\"]\nnums = [1]\n");
        set(&mut t, "NDXP_A__N", "42").unwrap();
        set(&mut t, "NDXP_A__F", "2").unwrap();
        set(&mut t, "NDXP_A__B", "true").unwrap();
        set(&mut t, "NDXP_A__S", "123").unwrap();
        set(&mut t, "NDXP_A__L", "q, r").unwrap();
        set(&mut t, "NDXP_A__NUMS", "[3, 4]").unwrap();
        assert_eq!(
            t,
            table(
                "[a]\nn = 42\nf = 2.0\nb = true\ns = \"123\"\nl = [\"q\", \"r\"]\nnums = [3, 4]\n"
            )
        );
        for (var, raw) in [
            ("NDXP_A__N", "4x"),
            ("NDXP_A__B", "yes"),
            ("NDXP_A__F", "inf"),
            ("NDXP_A__NUMS", "1,x"),
        ] {
            let e = set(&mut t, var, raw).unwrap_err();
            assert_eq!(e.var, var);
            assert!(!e.to_string().contains(raw), "the value is not echoed: {e}");
        }
        let e = set(&mut t, "NDXP__A", "1").unwrap_err();
        assert!(e.reason.contains("section"), "{e}");
    }

    #[test]
    fn keys_the_file_does_not_set_are_guessed_and_created() {
        let mut t = table("[[cas]]\nname = \"x\"\n");
        assert_eq!(set(&mut t, "NDXP_B__PORT", "8").unwrap(), Typed::Guessed);
        set(&mut t, "NDXP_B__ADDR", "127.0.0.1:1").unwrap();
        set(&mut t, "NDXP_CAS__0__NAME", "y").unwrap();
        set(&mut t, "NDXP_CAS__1__NAME", "z").unwrap();
        assert_eq!(
            t,
            table("[b]\nport = 8\naddr = \"127.0.0.1:1\"\n[[cas]]\nname = \"y\"\n[[cas]]\nname = \"z\"\n")
        );
        let e = set(&mut t, "NDXP_CAS__5__NAME", "w").unwrap_err();
        assert!(e.reason.contains("at most 2"), "{e}");
        let e = set(&mut t, "NDXP_B__PORT__X", "1").unwrap_err();
        assert!(e.reason.contains("b.port is a value"), "{e}");
    }

    #[test]
    fn the_environment_is_read_in_name_order_and_other_names_are_left() {
        let vars = [
            ("NDXP_B__X", "2"),
            ("NDXP_LOG", "debug"),
            ("NDXP_A__X", "1"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let o = Overrides::from_vars(vars).unwrap();
        let names: Vec<_> = o.iter().map(|o| o.var.as_str()).collect();
        assert_eq!(names, ["NDXP_A__X", "NDXP_B__X"]);
    }
}
