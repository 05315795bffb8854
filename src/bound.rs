//! Size bounds applied on the caller's thread, before anything is queued: every string of
//! an event, the error chain, the stack. They keep memory and the worker's time bounded
//! whatever the app passes (a 50 MB message, a 5,000-link chain), so the flush deadline
//! holds.
//!
//! Cutting happens before scrubbing, so a cut must never leave part of a secret that the
//! scrubber can no longer recognise: [`cut`] ends a string at a token boundary (whitespace
//! or punctuation that no token, e-mail or path contains) and drops the partial token, and
//! when no such boundary is near the end the whole tail run is dropped. What remains is
//! whole tokens only, which the scrubber sees as it would have in the full text.

use std::borrow::Cow;

/// The most bytes kept of one string of an event (message, exception value, breadcrumb,
/// frame text). Sentry itself truncates values at 8,192 characters.
pub(crate) const TEXT_MAX: usize = 8 * 1024;
/// The most links of a `source()` chain reported: the outermost half and the innermost
/// (root-cause) half.
pub(crate) const CHAIN_MAX: usize = 16;
/// How far a `source()` chain is followed at all (a chain that is longer, or loops, is cut
/// there; only pointers are followed, nothing is formatted).
pub(crate) const CHAIN_WALK_MAX: usize = 10_000;
/// The most stack frames reported: the ones nearest the error and the outermost ones.
pub(crate) const FRAMES_MAX: usize = 200;
/// The marker that ends a cut string.
pub(crate) const CUT_MARK: &str = " [truncated]";

/// Whether `c` separates tokens: whitespace and punctuation that secrets, e-mails, URLs and
/// paths do not contain.
fn is_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '"' | '\'' | '`' | '|'
        )
}

/// The longest prefix of `s` of at most `max` bytes that ends at a token boundary, or all
/// of `s` if it fits. `None`: `s` fits as it is.
pub(crate) fn cut_point(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // A boundary at the cut itself keeps the last token whole.
    if s[end..].chars().next().is_some_and(is_boundary) {
        return Some(end);
    }
    // Otherwise back off to the last boundary: the partial token is dropped, however long.
    Some(
        s[..end]
            .char_indices()
            .rev()
            .find(|(_, c)| is_boundary(*c))
            .map_or(0, |(i, _)| i),
    )
}

/// `s` cut to at most about `max` bytes at a token boundary, with [`CUT_MARK`] appended
/// when anything was dropped.
pub(crate) fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match cut_point(s, max) {
        None => Cow::Borrowed(s),
        Some(at) => {
            let mut out = String::with_capacity(at + CUT_MARK.len());
            out.push_str(&s[..at]);
            out.push_str(CUT_MARK);
            Cow::Owned(out)
        }
    }
}

/// [`cut`] for an owned string, without copying when it fits.
pub(crate) fn cut_owned(s: String, max: usize) -> String {
    match cut_point(&s, max) {
        None => s,
        Some(at) => {
            let mut s = s;
            s.truncate(at);
            s.push_str(CUT_MARK);
            s
        }
    }
}

/// Which of `n` items to keep when at most `max` may be: the first half and the last half.
pub(crate) fn keep_ends(n: usize, max: usize) -> impl Fn(usize) -> bool {
    let head = max.div_ceil(2);
    let tail = max / 2;
    move |i| n <= max || i < head || i >= n - tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_kept() {
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut_owned("hello".into(), 5), "hello");
    }

    #[test]
    fn a_cut_never_leaves_part_of_a_token() {
        let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyz01";
        let text = format!("failed: token {token} rejected");
        for max in 0..text.len() {
            let out = cut(&text, max);
            // Either the whole token or none of it.
            let partial =
                (8..token.len()).any(|n| out.contains(&token[..n]) && !out.contains(token));
            assert!(!partial, "{max}: {out}");
        }
        let email = "mail alice.liddell@example.com now";
        assert_eq!(cut(email, 20), format!("mail{CUT_MARK}"));
    }

    #[test]
    fn one_long_run_is_dropped_whole() {
        let run = "x".repeat(100);
        assert_eq!(cut(&run, 50), CUT_MARK);
        // Multi-byte characters are never split.
        let wide = "é".repeat(100);
        assert_eq!(cut(&format!("a {wide}"), 51), format!("a{CUT_MARK}"));
    }

    #[test]
    fn ends_are_kept() {
        let keep = keep_ends(10, 4);
        let kept: Vec<usize> = (0..10).filter(|i| keep(*i)).collect();
        assert_eq!(kept, [0, 1, 8, 9]);
        let keep = keep_ends(3, 4);
        assert!((0..3).all(keep));
    }
}
