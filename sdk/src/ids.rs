//! Random identifiers: the anonymous ID, the session ID and the page's key base (batch names, and so `messageId`s),
//! as UUIDv4 text.
//!
//! The randomness comes from the caller (`crypto.getRandomValues` in the browser), so this stays pure.

use crate::json::{hex_digit, push_ascii};

/// A UUIDv4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`) made of 122 of the 128 random bits given.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_ascii(&mut out, hex_digit(b >> 4));
        push_ascii(&mut out, hex_digit(b & 0xf));
    }
    out
}

/// True for the text [`uuid_v4`] produces: what a stored ID must look like before it is trusted again.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_version_4_variant_1_uuid() {
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert!(is_uuid(&id));
        assert!(!is_uuid("ffffffff-ffff-4fff-bfff-fffffffffff"));
        assert!(!is_uuid("ffffffff_ffff-4fff-bfff-ffffffffffff"));
        assert!(!is_uuid("<script>alert(1)</script>0000000000"));
    }
}
