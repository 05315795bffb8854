//! Salted hashing for the `hash` redaction.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How many bytes of the HMAC are kept (16 hex digits): enough to keep distinct values apart
/// in one app's reports, too few to serve as a fingerprint across installs.
const KEPT_BYTES: usize = 8;

/// The prefix of a hash as the `hash` redaction writes it.
pub(crate) const HASH_PREFIX: &str = "<hash:";

/// The salted hash of `value` exactly as the [`Redaction::Hash`](crate::Redaction::Hash)
/// redaction writes it: `<hash:` + the first 8 bytes of HMAC-SHA256(salt, value) in lower-case
/// hex + `>`.
///
/// Equal values hash equally under one salt, so reports still group by them, while the value
/// itself cannot be read back or recomputed without the per-install salt.
///
/// ```
/// use consentry_scrubbers::hash_with_salt;
///
/// let hash = hash_with_salt(b"salt", "alice@example.com");
/// assert_eq!(hash.len(), "<hash:>".len() + 16);
/// assert_eq!(hash, hash_with_salt(b"salt", "alice@example.com"));
/// assert_ne!(hash, hash_with_salt(b"other salt", "alice@example.com"));
/// ```
pub fn hash_with_salt(salt: &[u8], value: &str) -> String {
    let digest: Vec<u8> = match <Hmac<Sha256> as Mac>::new_from_slice(salt) {
        Ok(mut mac) => {
            mac.update(value.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length, so this branch is not reached; it still hashes with
        // the salt rather than failing, because scrubbing must not panic.
        Err(_) => {
            let mut hasher = Sha256::new();
            hasher.update((salt.len() as u64).to_le_bytes());
            hasher.update(salt);
            hasher.update(value.as_bytes());
            hasher.finalize().to_vec()
        }
    };
    let mut out = String::with_capacity(HASH_PREFIX.len() + 2 * KEPT_BYTES + 1);
    out.push_str(HASH_PREFIX);
    for byte in digest.iter().take(KEPT_BYTES) {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out.push('>');
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// The length in bytes of `<hash:...>` starting at `text[start..]`, if one starts there.
pub(crate) fn hash_len_at(text: &str, start: usize) -> Option<usize> {
    let rest = text.get(start..)?;
    let body = rest.strip_prefix(HASH_PREFIX)?;
    let hex = body.get(..2 * KEPT_BYTES)?;
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    body.get(2 * KEPT_BYTES..)?
        .starts_with('>')
        .then_some(HASH_PREFIX.len() + 2 * KEPT_BYTES + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // HMAC-SHA256 test vector from RFC 4231, test case 2, truncated to 8 bytes.
        assert_eq!(
            hash_with_salt(b"Jefe", "what do ya want for nothing?"),
            "<hash:5bdcc146bf60754e>"
        );
    }

    #[test]
    fn recognises_its_own_output() {
        let hash = hash_with_salt(b"", "x");
        let text = format!("a {hash} b");
        assert_eq!(hash_len_at(&text, 2), Some(hash.len()));
        assert_eq!(hash_len_at(&text, 0), None);
        assert_eq!(hash_len_at("<hash:0123>", 0), None);
    }
}
