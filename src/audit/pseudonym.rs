//! Keyed pseudonyms of client IPs and user names.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ConfigError;

/// Shortest accepted key, in bytes: 256 bits, the HMAC-SHA256 block of security
/// (RFC 2104 §3: keys shorter than the hash output weaken it).
const MIN_PSEUDONYM_KEY_LEN: usize = 32;

/// Replaces client IPs and user names in logs and events with keyed pseudonyms.
///
/// A pseudonym is the first 128 bits of `HMAC-SHA256(key, domain ‖ value)` in hex, so the
/// same IP or user always maps to the same 32 characters (you can still follow one attacker
/// or one account across lines), but nobody without the key can reverse it or test guesses
/// against it, unlike a plain hash of the 2³² IPv4 addresses. IPs and names use different
/// domains, so an IP and a user name never share a pseudonym. This is pseudonymisation in
/// the sense of GDPR Art. 4(5): keep the key apart from the logs, and rotate it to unlink
/// old logs.
///
/// ```
/// use axum_shield::audit::Pseudonymizer;
///
/// let p = Pseudonymizer::new([7u8; 32])?;
/// let a = p.user("alice");
/// assert_eq!(a.as_str().len(), 32);
/// assert_eq!(a, p.user("alice"));
/// assert_ne!(a, p.user("bob"));
/// # Ok::<(), axum_shield::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Pseudonymizer(Arc<Hmac<Sha256>>);

impl Pseudonymizer {
    /// A pseudonymizer with a secret key of at least 32 bytes (read
    /// it from a secret store; never hard-code it).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the key is shorter than 32 bytes.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = key.as_ref();
        if key.len() < MIN_PSEUDONYM_KEY_LEN {
            return Err(ConfigError::new(
                "pseudonymize",
                format!(
                    "a {}-byte key is too short for HMAC-SHA256 pseudonyms",
                    key.len()
                ),
                "use a random key of at least 32 bytes from your secret store",
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| {
            ConfigError::new(
                "pseudonymize",
                "the key was refused by HMAC-SHA256",
                "use a random key of at least 32 bytes",
            )
        })?;
        Ok(Self(Arc::new(mac)))
    }

    fn digest(&self, domain: &[u8], value: &[u8]) -> Pseudonym {
        let mut mac = (*self.0).clone();
        mac.update(domain);
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 32];
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in tag.iter().take(16).enumerate() {
            out[2 * i] = DIGITS[(byte >> 4) as usize];
            out[2 * i + 1] = DIGITS[(byte & 0xf) as usize];
        }
        Pseudonym(out)
    }

    /// The pseudonym of a client IP (its 4 or 16 address bytes; IPv4-mapped IPv6 addresses
    /// are normalised first, so both spellings agree).
    pub fn ip(&self, ip: IpAddr) -> Pseudonym {
        match crate::client_ip::normalize(ip) {
            IpAddr::V4(v4) => self.digest(b"axum-shield ip\0", &v4.octets()),
            IpAddr::V6(v6) => self.digest(b"axum-shield ip\0", &v6.octets()),
        }
    }

    /// The pseudonym of a user name or principal id.
    pub fn user(&self, name: &str) -> Pseudonym {
        self.digest(b"axum-shield user\0", name.as_bytes())
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer { key: <redacted> }")
    }
}

/// A keyed pseudonym: 32 lowercase hex characters, kept on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pseudonym([u8; 32]);

impl Pseudonym {
    /// The pseudonym as text.
    pub fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused() {
        let err = Pseudonymizer::new(b"short").unwrap_err();
        assert_eq!(err.setting(), "pseudonymize");
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_domain_separated() {
        let a = Pseudonymizer::new([1u8; 32]).unwrap();
        let b = Pseudonymizer::new([2u8; 32]).unwrap();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(a.ip(ip), a.ip(ip));
        assert_ne!(a.ip(ip), b.ip(ip));
        assert_ne!(a.ip(ip).as_str(), a.user("203.0.113.7").as_str());
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(a.ip(ip), a.ip(mapped));
        assert!(a
            .user("alice")
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains('1'));
    }
}
