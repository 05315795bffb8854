//! The scrubber's data: the compiled state ([`Inner`]), the per-scrub context and the
//! per-string counts. Its behaviour is in `engine` (building, scrubbing a string) and `walk`
//! (scrubbing a JSON value); both use these types, so neither needs the other's module for
//! them.

use aho_corasick::AhoCorasick;

use crate::builtin::Builtins;
use crate::compile::{CompiledRule, TriggerTable};
use crate::env::EnvMatcher;
use crate::error::ScrubError;
use crate::identity::{IdentityMatcher, IdentitySet};
use crate::paths::HomeLiterals;

/// The longest string scrubbed, in bytes. A longer one is an error (fail closed): the work
/// per string stays bounded whatever the input. Scrubbing is linear in the string's length,
/// so this bounds the time too (about a second per 32 MiB in a release build).
pub const MAX_STRING_BYTES: usize = 64 << 20;

/// What [`Inner::scrub_str`] returns for a string over [`MAX_STRING_BYTES`] in place of a
/// number of passes.
pub(crate) const TOO_LONG: usize = 0;

/// The error for a string that did not settle after `passes` passes, or was too long.
pub(crate) fn str_error(path: String, passes: usize) -> ScrubError {
    if passes == TOO_LONG {
        ScrubError::TooLong {
            path,
            limit: MAX_STRING_BYTES,
        }
    } else {
        ScrubError::Unstable { path, passes }
    }
}

/// Per-scrub state: the identity matcher in force (the scrubber's own, or one extended with
/// identities learned from the event).
pub(crate) struct Ctx<'a> {
    /// Identities learned from the event that the scrubber did not know.
    pub(crate) learned: Option<&'a IdentityMatcher>,
}

/// How many matches each rule redacted in one string.
pub(crate) type Hits = Vec<(usize, u64)>;

pub(crate) struct Inner {
    pub(crate) builtin: &'static Builtins,
    pub(crate) user_rules: Vec<CompiledRule>,
    pub(crate) enabled: Vec<bool>,
    pub(crate) enabled_mask: u128,
    pub(crate) triggers: TriggerTable,
    pub(crate) identities: IdentitySet,
    pub(crate) id_matcher: IdentityMatcher,
    /// Rule index per identity kind, if that rule is enabled.
    pub(crate) id_rules: [Option<usize>; 3],
    /// Where identities are replaced: the first enabled identity rule.
    pub(crate) id_stage: Option<usize>,
    pub(crate) running_users: Vec<String>,
    pub(crate) home_literals: HomeLiterals,
    pub(crate) env: EnvMatcher,
    pub(crate) protector: Option<AhoCorasick>,
    pub(crate) key_rules: Vec<usize>,
    pub(crate) salt: Vec<u8>,
}
