//! Provisioned Digest credentials: AoR -> realm and H(A1) per algorithm. Never passwords.
//!
//! **The Digest username.** A user's username is their AoR without scheme, `bob@example.com`
//! (what IMS calls the private identity, and what most SIP clients send when told their
//! address). The full URI, `sip:bob@example.com`, is accepted too. Because H(A1) hashes the
//! username, both forms are hashed at provisioning: 2 forms x 3 algorithms = 6 HA1s per user
//! (160 bytes). `sips:`, a bare user part (`bob`), or another spelling of the host (case,
//! port) are not recognised: the client must send one of the two forms exactly, with the
//! host in lower case.
//!
//! **The realm** is the AoR's domain unless given ([`Credentials::add_in_realm`]).
//!
//! Lookups take the username as bytes and allocate nothing (hashbrown + foldhash, keyed by the
//! AoR bytes). The map is built and changed on the slow path (CLI, store) and read through a
//! shared reference (an `ArcSwap` snapshot in the server).
//!
//! **Serialised form** (version 1, all integers big-endian):
//! ```text
//! "IMSAUTH\0" | version u8 = 1 | count u32 | count x entry
//! entry = aor_len u8 | aor | realm_len u8 | realm
//!       | for form in [bare, sip-uri]: md5 (16) | sha-256 (32) | sha-512-256 (32)
//! ```
#![forbid(unsafe_code)]

use foldhash::fast::RandomState;
use hashbrown::HashMap;

use super::algorithm::{Algorithm, Ha1, ha1};

const MAGIC: &[u8; 8] = b"IMSAUTH\0";
const VERSION: u8 = 1;
/// Longest AoR or realm we store (they are length-prefixed with one byte).
pub const MAX_NAME_LEN: usize = 255;
const HA1_SET_LEN: usize = 16 + 32 + 32;
const SIP_PREFIX: &[u8] = b"sip:";

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("not a sip: AoR of the form user@host")]
    BadUri,
    #[error("AoR or realm longer than 255 bytes")]
    TooLong,
    #[error("realm empty, longer than 255 bytes, or with control characters")]
    BadRealm,
    #[error("empty password")]
    EmptyPassword,
    #[error("credentials data is corrupt")]
    Corrupt,
    #[error("credentials data has an unknown version")]
    UnknownVersion,
}

/// Which spelling of the username the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsernameForm {
    /// `bob@example.com`
    Bare,
    /// `sip:bob@example.com`
    SipUri,
}

impl UsernameForm {
    fn index(self) -> usize {
        match self {
            UsernameForm::Bare => 0,
            UsernameForm::SipUri => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    realm: Box<[u8]>,
    /// `[form][algorithm]`
    ha1: [[Ha1; 3]; 2],
}

/// What `list()` shows: no secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserInfo<'c> {
    pub aor: &'c [u8],
    pub realm: &'c [u8],
}

/// A user found by Digest username.
#[derive(Clone, Copy, Debug)]
pub struct StoredUser<'c> {
    pub aor: &'c [u8],
    pub realm: &'c [u8],
    pub form: UsernameForm,
    ha1: &'c [Ha1; 3],
}

impl StoredUser<'_> {
    /// The HA1 for the username form the client used and the algorithm it chose.
    pub fn ha1(&self, algorithm: Algorithm) -> Ha1 {
        self.ha1[algorithm.index()]
    }
}

/// The credentials map.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    users: HashMap<Box<[u8]>, Entry, RandomState>,
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.users == other.users
    }
}

impl Credentials {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds or replaces a user, in the realm of the AoR's domain. `user_uri` is
    /// `sip:bob@example.com`, `sips:...` or `bob@example.com`; it is normalised first.
    pub fn add(&mut self, user_uri: &str, password: &str) -> Result<(), CredentialsError> {
        let aor = normalize_aor(user_uri)?;
        let realm = aor.rsplit_once('@').map(|(_, host)| host.to_owned());
        let realm = realm.ok_or(CredentialsError::BadUri)?;
        self.insert(aor, &realm, password)
    }

    /// Adds or replaces a user in an explicitly named realm.
    pub fn add_in_realm(
        &mut self,
        user_uri: &str,
        realm: &str,
        password: &str,
    ) -> Result<(), CredentialsError> {
        let aor = normalize_aor(user_uri)?;
        self.insert(aor, realm, password)
    }

    fn insert(&mut self, aor: String, realm: &str, password: &str) -> Result<(), CredentialsError> {
        if realm.is_empty() || realm.len() > MAX_NAME_LEN || realm.chars().any(char::is_control) {
            return Err(CredentialsError::BadRealm);
        }
        if password.is_empty() {
            return Err(CredentialsError::EmptyPassword);
        }
        let bare = aor.as_bytes();
        let sip_uri = [SIP_PREFIX, bare].concat();
        let set = |username: &[u8]| {
            Algorithm::ALL.map(|a| ha1(a, username, realm.as_bytes(), password.as_bytes()))
        };
        let entry = Entry {
            realm: realm.as_bytes().into(),
            ha1: [set(bare), set(&sip_uri)],
        };
        self.users
            .insert(aor.into_bytes().into_boxed_slice(), entry);
        Ok(())
    }

    /// Removes a user; `Ok(false)` when there was none.
    pub fn remove(&mut self, user_uri: &str) -> Result<bool, CredentialsError> {
        let aor = normalize_aor(user_uri)?;
        Ok(self.users.remove(aor.as_bytes()).is_some())
    }

    /// All users, sorted by AoR (for the CLI).
    pub fn list(&self) -> Vec<UserInfo<'_>> {
        let mut all: Vec<UserInfo<'_>> = self
            .users
            .iter()
            .map(|(aor, e)| UserInfo {
                aor,
                realm: &e.realm,
            })
            .collect();
        all.sort_unstable_by(|a, b| a.aor.cmp(b.aor));
        all
    }

    /// Finds the user a Digest username names (`bob@example.com` or `sip:bob@example.com`).
    /// Allocation-free.
    pub fn lookup(&self, username: &[u8]) -> Option<StoredUser<'_>> {
        let (key, form) = match username.strip_prefix(SIP_PREFIX) {
            Some(rest) => (rest, UsernameForm::SipUri),
            None => (username, UsernameForm::Bare),
        };
        let (aor, entry) = self.users.get_key_value(key)?;
        Some(StoredUser {
            aor,
            realm: &entry.realm,
            form,
            ha1: &entry.ha1[form.index()],
        })
    }

    /// The versioned binary form (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let per_entry = |aor: &[u8], e: &Entry| 2 + aor.len() + e.realm.len() + 2 * HA1_SET_LEN;
        let total: usize = self.users.iter().map(|(a, e)| per_entry(a, e)).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 5 + total);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.users.len() as u32).to_be_bytes());
        // Sorted, so the same map always serialises to the same bytes.
        let mut keys: Vec<&Box<[u8]>> = self.users.keys().collect();
        keys.sort_unstable();
        for aor in keys {
            let Some(e) = self.users.get(aor) else {
                continue;
            };
            // Lengths were bounded to MAX_NAME_LEN when the entry was made.
            out.push(aor.len() as u8);
            out.extend_from_slice(aor);
            out.push(e.realm.len() as u8);
            out.extend_from_slice(&e.realm);
            for set in &e.ha1 {
                for h in set {
                    out.extend_from_slice(h.as_bytes());
                }
            }
        }
        out
    }

    /// Parses [`Credentials::to_bytes`] output. Every entry is validated.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let mut r = Reader { s: bytes };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(CredentialsError::Corrupt);
        }
        if r.take(1)?[0] != VERSION {
            return Err(CredentialsError::UnknownVersion);
        }
        let count = r.take(4)?;
        let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
        // An entry is at least 2 + 2 * HA1_SET_LEN bytes: do not trust `count` for capacity.
        let capacity = count.min(r.s.len() / (2 + 2 * HA1_SET_LEN));
        let mut users = HashMap::with_capacity_and_hasher(capacity, RandomState::default());
        for _ in 0..count {
            let aor_len = usize::from(r.take(1)?[0]);
            let aor = r.take(aor_len)?;
            let realm_len = usize::from(r.take(1)?[0]);
            let realm = r.take(realm_len)?;
            let aor_text = std::str::from_utf8(aor).map_err(|_| CredentialsError::Corrupt)?;
            if normalize_aor(aor_text).ok().as_deref() != Some(aor_text) || realm.is_empty() {
                return Err(CredentialsError::Corrupt);
            }
            let mut read_set = || -> Result<[Ha1; 3], CredentialsError> {
                let mut set = [ha1(Algorithm::Md5, b"", b"", b""); 3];
                for (slot, a) in set.iter_mut().zip(Algorithm::ALL) {
                    let raw = r.take(a.output_len())?;
                    *slot = Ha1::from_bytes(a, raw).ok_or(CredentialsError::Corrupt)?;
                }
                Ok(set)
            };
            let bare = read_set()?;
            let sip_uri = read_set()?;
            let entry = Entry {
                realm: realm.into(),
                ha1: [bare, sip_uri],
            };
            if users.insert(aor.into(), entry).is_some() {
                return Err(CredentialsError::Corrupt);
            }
        }
        if !r.s.is_empty() {
            return Err(CredentialsError::Corrupt);
        }
        Ok(Credentials { users })
    }
}

struct Reader<'a> {
    s: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CredentialsError> {
        if self.s.len() < n {
            return Err(CredentialsError::Corrupt);
        }
        let (head, tail) = self.s.split_at(n);
        self.s = tail;
        Ok(head)
    }
}

/// Normalises a user's URI to the stored AoR form `user@host` (SPEC D8): scheme, URI
/// parameters, headers and port dropped; the user part percent-decoded (and kept case-
/// sensitive); the host lower-cased. Only `sip:`, `sips:` or no scheme.
pub fn normalize_aor(user_uri: &str) -> Result<String, CredentialsError> {
    let s = user_uri.trim();
    let s = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s);
    let lower_prefix = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let rest = if lower_prefix("sip:") {
        &s[4..]
    } else if lower_prefix("sips:") {
        &s[5..]
    } else if s.contains(':') && !s.contains('@') {
        // tel: and other schemes have no Digest username here.
        return Err(CredentialsError::BadUri);
    } else {
        s
    };
    let rest = rest.split([';', '?']).next().unwrap_or_default();
    let (user, host) = rest.split_once('@').ok_or(CredentialsError::BadUri)?;
    let host = match host.strip_prefix('[') {
        // [v6]:port
        Some(v6) => {
            let end = v6.find(']').ok_or(CredentialsError::BadUri)?;
            &host[..end + 2]
        }
        None => host.split(':').next().unwrap_or_default(),
    };
    let user = percent_decode(user)?;
    let valid = |c: char| c.is_ascii_graphic() && !matches!(c, '@' | '"' | '\\' | '<' | '>');
    if user.is_empty() || host.is_empty() || !user.chars().all(valid) || !host.chars().all(valid) {
        return Err(CredentialsError::BadUri);
    }
    let aor = format!("{user}@{}", host.to_ascii_lowercase());
    if aor.len() > MAX_NAME_LEN {
        return Err(CredentialsError::TooLong);
    }
    Ok(aor)
}

fn percent_decode(s: &str) -> Result<String, CredentialsError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|&b| super::digest::hex_value(b));
            let (hi, lo) = hex(i + 1).zip(hex(i + 2)).ok_or(CredentialsError::BadUri)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| CredentialsError::BadUri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        for (input, want) in [
            ("sip:bob@example.com", "bob@example.com"),
            ("SIP:bob@Example.COM:5060;transport=tcp", "bob@example.com"),
            ("sips:bob@example.com?subject=x", "bob@example.com"),
            ("<sip:al%69ce@example.com>", "alice@example.com"),
            ("Bob@example.com", "Bob@example.com"),
            ("sip:u@[2001:DB8::1]:5060", "u@[2001:db8::1]"),
        ] {
            assert_eq!(normalize_aor(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "tel:+15551230000",
            "sip:example.com",
            "sip:@example.com",
            "sip:a@",
            "sip:a%4@x",
            "sip:a b@x",
            "sip:a%40b@x",
        ] {
            assert_eq!(normalize_aor(bad), Err(CredentialsError::BadUri), "{bad}");
        }
    }

    #[test]
    fn add_lookup_remove_list() {
        let mut c = Credentials::new();
        c.add("sip:bob@example.com", "secret").expect("add");
        c.add_in_realm("alice@example.com", "ims.example.com", "pw")
            .expect("add");
        assert_eq!(c.len(), 2);
        let bob = c.lookup(b"bob@example.com").expect("bare form");
        assert_eq!(
            (bob.aor, bob.realm, bob.form),
            (
                &b"bob@example.com"[..],
                &b"example.com"[..],
                UsernameForm::Bare
            )
        );
        assert_eq!(
            bob.ha1(Algorithm::Sha256),
            ha1(
                Algorithm::Sha256,
                b"bob@example.com",
                b"example.com",
                b"secret"
            )
        );
        let bob_uri = c.lookup(b"sip:bob@example.com").expect("uri form");
        assert_eq!(bob_uri.form, UsernameForm::SipUri);
        assert_eq!(
            bob_uri.ha1(Algorithm::Md5),
            ha1(
                Algorithm::Md5,
                b"sip:bob@example.com",
                b"example.com",
                b"secret"
            )
        );
        assert!(c.lookup(b"sips:bob@example.com").is_none());
        assert!(c.lookup(b"bob").is_none());
        assert!(c.lookup(b"bob@EXAMPLE.com").is_none());
        let list = c.list();
        assert_eq!(list[0].aor, b"alice@example.com");
        assert_eq!(list[0].realm, b"ims.example.com");
        assert_eq!(c.remove("sip:Bob@example.com"), Ok(false));
        assert_eq!(c.remove("sip:bob@EXAMPLE.com"), Ok(true));
        assert_eq!(c.len(), 1);
        assert_eq!(c.add("sip:x@y", ""), Err(CredentialsError::EmptyPassword));
    }

    #[test]
    fn serialisation_round_trip_and_corruption() {
        let mut c = Credentials::new();
        c.add("sip:bob@example.com", "secret").expect("add");
        c.add_in_realm("sip:carol@example.org", "realm with \"quotes\"", "x")
            .expect("add");
        let bytes = c.to_bytes();
        assert_eq!(Credentials::from_bytes(&bytes), Ok(c.clone()));
        assert_eq!(Credentials::new().to_bytes().len(), 13);
        assert_eq!(
            Credentials::from_bytes(&Credentials::new().to_bytes()),
            Ok(Credentials::new())
        );
        // Truncations and trailing bytes.
        for cut in 0..bytes.len() {
            assert!(Credentials::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Credentials::from_bytes(&longer),
            Err(CredentialsError::Corrupt)
        );
        let mut version = bytes.clone();
        version[8] = 2;
        assert_eq!(
            Credentials::from_bytes(&version),
            Err(CredentialsError::UnknownVersion)
        );
        // A non-normalised AoR is refused.
        let mut upper = bytes.clone();
        let at = upper.windows(3).position(|w| w == b"bob").expect("bob");
        upper[at + 4..at + 11].copy_from_slice(b"EXAMPLE");
        assert_eq!(
            Credentials::from_bytes(&upper),
            Err(CredentialsError::Corrupt)
        );
        // A huge count with no data does not allocate for it.
        let mut huge = MAGIC.to_vec();
        huge.push(VERSION);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Credentials::from_bytes(&huge),
            Err(CredentialsError::Corrupt)
        );
    }
}
