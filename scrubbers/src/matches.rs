//! Choosing among an automaton's matches, and which host names name a machine: shared by
//! the identity matchers and the home-path detector (kept apart so neither module depends
//! on the other in both directions).

use std::ops::Range;

use aho_corasick::AhoCorasick;

/// Hostnames that name no machine in particular.
pub(crate) const NOT_HOSTS: &[&str] =
    &["localhost", "wsl$", "wsl.localhost", "?", ".", "127.0.0.1"];

/// Whether a hostname names a machine in particular (not `localhost`, `wsl$`).
pub(crate) fn names_machine(host: &str) -> bool {
    !NOT_HOSTS.iter().any(|n| host.eq_ignore_ascii_case(n))
}

/// The leftmost-longest non-overlapping matches of a `MatchKind::Standard` automaton among
/// those that pass `valid`. Looking at every overlapping match, rather than asking a
/// leftmost-longest automaton, matters when the longest match at a place is invalid and a
/// shorter one is not: `alice` in `alice-bz` when `alice-b` is also a pattern.
pub(crate) fn select_matches(
    ac: &AhoCorasick,
    text: &str,
    valid: impl Fn(usize, &Range<usize>) -> bool,
) -> Vec<(usize, Range<usize>)> {
    let candidates: Vec<(usize, Range<usize>, ())> = ac
        .find_overlapping_iter(text)
        .map(|m| (m.pattern().as_usize(), m.start()..m.end(), ()))
        .filter(|(pattern, range, _)| !range.is_empty() && valid(*pattern, range))
        .collect();
    select(candidates)
        .into_iter()
        .map(|(pattern, range, ())| (pattern, range))
        .collect()
}

/// Leftmost-longest, non-overlapping selection among candidate matches.
pub(crate) fn select<T>(
    mut candidates: Vec<(usize, Range<usize>, T)>,
) -> Vec<(usize, Range<usize>, T)> {
    candidates.sort_by(|a, b| a.1.start.cmp(&b.1.start).then(b.1.end.cmp(&a.1.end)));
    let mut out = Vec::with_capacity(candidates.len());
    let mut last = 0;
    for (pattern, range, extra) in candidates {
        if range.start >= last {
            last = range.end;
            out.push((pattern, range, extra));
        }
    }
    out
}
