//! Tampering with an archive's bytes: the proptest strategy both archive
//! tests use, and splitting an archive into its lines and back.

use proptest::prelude::*;

/// The archive's lines, without their `\n`.
pub fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .strip_suffix(b"\n")
        .unwrap()
        .split(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Lines joined back into an archive, each ended by `\n`.
pub fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// One change to an archive.
#[derive(Debug, Clone)]
pub enum Tamper {
    Flip { at: usize, mask: u8 },
    Delete(usize),
    Swap(usize, usize),
    Duplicate { from: usize, to: usize },
    Truncate(usize),
}

/// Any [`Tamper`].
pub fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Tamper::Flip { at, mask }),
        any::<usize>().prop_map(Tamper::Delete),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Tamper::Duplicate { from, to }),
        any::<usize>().prop_map(Tamper::Truncate),
    ]
}

/// Applies a tampering; `None` when it leaves the archive unchanged (a swap
/// of a line with itself).
pub fn apply(t: &Tamper, original: &[u8]) -> Option<Vec<u8>> {
    let l = lines(original);
    // Record lines are 1..=n-4 (header first; timestamps, certificates
    // and end last).
    let recs = l.len() - 4;
    let rec = |i: usize| 1 + i % recs;
    match *t {
        Tamper::Flip { at, mask } => {
            let mut b = original.to_vec();
            let i = at % b.len();
            b[i] ^= mask;
            Some(b)
        }
        Tamper::Delete(i) => {
            let mut l = l;
            l.remove(i % (recs + 4));
            Some(join(&l))
        }
        Tamper::Swap(a, b) => {
            let (a, b) = (rec(a), rec(b));
            if a == b {
                return None;
            }
            let mut l = l;
            l.swap(a, b);
            Some(join(&l))
        }
        Tamper::Duplicate { from, to } => {
            let mut l = l;
            let line = l[rec(from)].clone();
            l.insert(rec(to), line);
            Some(join(&l))
        }
        Tamper::Truncate(n) => Some(original[..n % original.len()].to_vec()),
    }
}
