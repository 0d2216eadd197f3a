//! Stream names and entities: a KurrentDB stream name is any bytes; a batpak entity
//! is 1 to 1,024 bytes of UTF-8 without control characters, not under `batpak:`.
//!
//! The mapping is percent-escaping of exactly what the entity rules refuse, plus
//! `%` itself so that it can be undone: every byte that is not valid UTF-8, every
//! control character (its UTF-8 bytes) and `%` become `%XX` (upper-case hex), and a
//! name that would begin with `batpak:` has its `b` written `%62`. Everything else
//! is kept, so an ordinary name (`order-17`, `$$order-17`, `$ce-order`) is its own
//! entity, and the escaping is golden-tested below.
//!
//! An entity that another writer named in a form this escaping never produces (a
//! `%` not followed by two hex digits, say) is shown to KurrentDB clients under its
//! text as it is; naming that text from a client reaches the escaped entity instead.

use std::fmt::Write as _;

/// The longest entity batpak accepts, in bytes.
const MAX_ENTITY: usize = 1024;

/// Why a stream name cannot be an entity.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    TooLong { escaped: usize },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "the stream name is empty"),
            NameError::TooLong { escaped } => write!(
                f,
                "the stream name is {escaped} bytes once escaped, at most {MAX_ENTITY}"
            ),
        }
    }
}

/// The entity of stream `name`.
pub(crate) fn entity_of(name: &[u8]) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                let bad_len = e.error_len().unwrap_or(after.len());
                let valid = std::str::from_utf8(valid).unwrap_or_default();
                (valid, &after[..bad_len])
            }
        };
        for c in valid.chars() {
            if c == '%' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
        for b in bad {
            let _ = write!(out, "%{b:02X}");
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    if out.starts_with("batpak:") {
        out.replace_range(0..1, "%62");
    }
    if out.len() > MAX_ENTITY {
        return Err(NameError::TooLong { escaped: out.len() });
    }
    Ok(out)
}

/// The stream name of `entity`: the escaping undone.
pub(crate) fn name_of(entity: &str) -> Vec<u8> {
    let bytes = entity.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_their_own_entities() {
        for name in ["order-17", "$$order-17", "$ce-order", "ümlaut/🦀", "a:b:c"] {
            assert_eq!(entity_of(name.as_bytes()).unwrap(), name);
            assert_eq!(name_of(name), name.as_bytes());
        }
    }

    #[test]
    fn golden_escapes() {
        let cases: [(&[u8], &str); 7] = [
            (b"50%", "50%25"),
            (b"tab\there", "tab%09here"),
            (b"batpak:x", "%62atpak:x"),
            (b"xbatpak:x", "xbatpak:x"),
            (b"\xff\xfeok", "%FF%FEok"),
            (b"new\nline\x7f", "new%0Aline%7F"),
            ("c1\u{85}".as_bytes(), "c1%C2%85"),
        ];
        for (name, entity) in cases {
            assert_eq!(entity_of(name).unwrap(), entity, "{name:?}");
            assert_eq!(name_of(entity), name, "{entity}");
            batpak::Coordinate::new(entity, "kurrentdb").expect("a valid entity");
        }
    }

    #[test]
    fn refused_names_say_why() {
        assert_eq!(entity_of(b""), Err(NameError::Empty));
        let long = vec![b'%'; 400];
        assert_eq!(entity_of(&long), Err(NameError::TooLong { escaped: 1200 }));
        assert!(entity_of(&[b'a'; 1024]).is_ok());
    }

    #[test]
    fn every_byte_string_round_trips() {
        // A deterministic sweep of short byte strings over an alphabet with every
        // class the escaping treats apart.
        let alphabet: [u8; 9] = [b'a', b'%', b'b', b':', 0x00, 0x7f, 0xc3, 0xa9, 0xff];
        let mut count = 0;
        for len in 1..=4u32 {
            for n in 0..alphabet.len().pow(len) {
                let mut k = n;
                let name: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[k % alphabet.len()];
                        k /= alphabet.len();
                        b
                    })
                    .collect();
                let entity = entity_of(&name).unwrap();
                assert_eq!(name_of(&entity), name, "{entity}");
                batpak::Coordinate::new(entity.as_str(), "s").expect("a valid entity");
                count += 1;
            }
        }
        assert_eq!(count, 9 + 81 + 729 + 6561);
    }
}
