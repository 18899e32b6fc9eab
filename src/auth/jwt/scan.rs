//! One pass over a verified token's payload: the registered claims this crate checks
//! (RFC 7519 §4.1) and the scopes and roles of the [`PrincipalClaims`] mapping, read straight
//! from the JSON text without building a `serde_json::Value` tree (which cost more than the
//! HS256 signature itself). The rest of the claims set is only checked for well-formed JSON;
//! handlers read it later with `Claims<T>`, typed, from the same text.
//!
//! Duplicate names among the claims read here are refused (RFC 7519 §4: a parser must reject
//! them or keep the last; keeping either would let two parsers of one token disagree).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::auth::scope::PrincipalClaims;
use crate::principal::{Principal, PrincipalKind};

/// What the payload held under one registered claim name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum Claim<T> {
    /// Not present.
    #[default]
    Absent,
    /// Present with the wrong JSON type.
    Invalid,
    /// Present and well-typed.
    Present(T),
}

/// `aud` against the configured audiences.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    #[default]
    Absent,
    /// Neither a string nor an array of strings.
    Invalid,
    /// Names one of the configured audiences.
    Matched,
    /// Names none of them (always so when none is configured).
    NotMatched,
}

/// The registered claims and the principal's scopes and roles, in mapping order.
#[derive(Debug, Default)]
pub(crate) struct Scanned<'de> {
    pub(crate) exp: Claim<u64>,
    pub(crate) nbf: Claim<u64>,
    pub(crate) iat: Claim<u64>,
    pub(crate) iss: Claim<Cow<'de, str>>,
    pub(crate) sub: Claim<Cow<'de, str>>,
    pub(crate) jti: Claim<Cow<'de, str>>,
    pub(crate) aud: Audience,
    /// Scope and role values tagged with the index of the mapping path that found them.
    found: Vec<(u8, String)>,
}

impl Scanned<'_> {
    /// The principal for `subject`: scopes then roles, each in the order of the mapping's
    /// paths (then document order), consecutive duplicates removed, as
    /// [`PrincipalClaims::principal`] finds them in the same claims.
    pub(crate) fn principal(
        &mut self,
        mapping: &PrincipalClaims,
        kind: PrincipalKind,
        subject: &str,
    ) -> Principal {
        let first_role = mapping.scope_paths().len();
        let is_role = |path: u8| usize::from(path) >= first_role;
        self.found.sort_by_key(|(path, _)| *path);
        // Consecutive duplicates within the scopes and within the roles, as `Vec::dedup` on
        // each list would remove them.
        self.found
            .dedup_by(|(pa, a), (pb, b)| a == b && is_role(*pa) == is_role(*pb));
        let split = self.found.partition_point(|(path, _)| !is_role(*path));
        // Drained straight into the principal's shared slices: one allocation each.
        let roles = self.found.drain(split..).map(|(_, v)| v).collect();
        let scopes = self.found.drain(..).map(|(_, v)| v).collect();
        Principal::from_parts(kind, subject.into(), scopes, roles)
    }
}

/// Why a scan failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// Not a JSON object, or not JSON at all.
    NotAClaimsSet,
    /// A claim read here appears twice.
    Duplicate,
}

/// The claims names this module reads itself; a mapping path starting with one of them is
/// served by the `Value` route instead (see [`fast_path_fits`]).
const REGISTERED: [&str; 7] = ["exp", "nbf", "iat", "iss", "sub", "jti", "aud"];

/// Whether `mapping` can be read by this scanner: at most 64 paths (one bit each), none
/// starting at a registered claim name.
pub(crate) fn fast_path_fits(mapping: &PrincipalClaims) -> bool {
    let paths = mapping.scope_paths().len() + mapping.role_paths().len();
    paths <= 64
        && mapping
            .scope_paths()
            .iter()
            .chain(mapping.role_paths())
            .all(|p| {
                p.parts()
                    .first()
                    .is_some_and(|first| !REGISTERED.contains(&first.as_str()))
            })
}

/// Scans `payload`. `audiences` are the configured ones; `mapping` must satisfy
/// [`fast_path_fits`] (otherwise no scope or role is collected).
pub(crate) fn scan<'de>(
    payload: &'de str,
    audiences: &[String],
    mapping: &PrincipalClaims,
) -> Result<Scanned<'de>, ScanError> {
    let duplicate = Cell::new(false);
    let paths = Paths { mapping };
    let mut out = Scanned::default();
    // Already valid UTF-8 (`check_claims` validates the payload once, as a whole): reading
    // from `str` spares serde_json a validation of every string it parses.
    let mut de = serde_json::Deserializer::from_str(payload);
    let result = TopLevel {
        audiences,
        paths,
        duplicate: &duplicate,
        out: &mut out,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(out),
        Err(_) if duplicate.get() => Err(ScanError::Duplicate),
        Err(_) => Err(ScanError::NotAClaimsSet),
    }
}

/// The mapping's paths, numbered scopes first then roles.
#[derive(Clone, Copy)]
struct Paths<'m> {
    mapping: &'m PrincipalClaims,
}

impl Paths<'_> {
    fn get(&self, index: usize) -> &[String] {
        let scopes = self.mapping.scope_paths();
        match scopes.get(index) {
            Some(p) => p.parts(),
            None => self
                .mapping
                .role_paths()
                .get(index - scopes.len())
                .map_or(&[], |p| p.parts()),
        }
    }

    fn count(&self) -> usize {
        (self.mapping.scope_paths().len() + self.mapping.role_paths().len()).min(64)
    }

    /// The paths in `within` whose segment at `depth` is `key`.
    fn matching(&self, within: u64, depth: usize, key: &str) -> u64 {
        let mut mask = 0;
        for i in bits(within) {
            if self.get(i).get(depth).is_some_and(|s| s == key) {
                mask |= 1 << i;
            }
        }
        mask
    }

    fn all(&self) -> u64 {
        match self.count() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }
}

fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

struct TopLevel<'a, 'de> {
    audiences: &'a [String],
    paths: Paths<'a>,
    duplicate: &'a Cell<bool>,
    out: &'a mut Scanned<'de>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims set")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        let mut seen_paths = 0u64;
        let mut seen_registered = [false; REGISTERED.len()];
        let all = self.paths.all();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(i) = REGISTERED.iter().position(|r| *r == key) {
                if std::mem::replace(&mut seen_registered[i], true) {
                    self.duplicate.set(true);
                    return Err(de::Error::custom("duplicate claim"));
                }
                match i {
                    0 => out.exp = map.next_value::<Scalar<'de>>()?.numeric_date(),
                    1 => out.nbf = map.next_value::<Scalar<'de>>()?.numeric_date(),
                    2 => out.iat = map.next_value::<Scalar<'de>>()?.numeric_date(),
                    3 => out.iss = map.next_value::<Scalar<'de>>()?.string(),
                    4 => out.sub = map.next_value::<Scalar<'de>>()?.string(),
                    5 => out.jti = map.next_value::<Scalar<'de>>()?.string(),
                    _ => {
                        out.aud = map.next_value_seed(AudienceSeed {
                            audiences: self.audiences,
                        })?
                    }
                }
                continue;
            }
            let mask = self.paths.matching(all, 0, &key);
            if mask == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen_paths & mask != 0 {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate claim"));
            }
            seen_paths |= mask;
            map.next_value_seed(PathValue {
                paths: self.paths,
                mask,
                depth: 1,
                duplicate: self.duplicate,
                found: &mut out.found,
            })?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the payload unless it has escapes (serde's own `Cow`
/// impl always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

/// Any JSON value, reduced to what a registered claim can be.
enum Scalar<'de> {
    U64(u64),
    Str(Cow<'de, str>),
    Other,
}

impl<'de> Scalar<'de> {
    /// RFC 7519 §2 allows fractional NumericDates; this profile accepts non-negative integers
    /// only, so that strings, floats, negatives and huge values are all refused the same way.
    fn numeric_date(self) -> Claim<u64> {
        match self {
            Self::U64(n) => Claim::Present(n),
            _ => Claim::Invalid,
        }
    }

    fn string(self) -> Claim<Cow<'de, str>> {
        match self {
            Self::Str(s) => Claim::Present(s),
            _ => Claim::Invalid,
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// `aud`: a string or an array of strings (RFC 7519 §4.1.3).
struct AudienceSeed<'a> {
    audiences: &'a [String],
}

impl<'de> DeserializeSeed<'de> for AudienceSeed<'_> {
    type Value = Audience;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Audience, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl AudienceSeed<'_> {
    fn names(&self, aud: &str) -> bool {
        self.audiences.iter().any(|a| a == aud)
    }
}

impl<'de> Visitor<'de> for AudienceSeed<'_> {
    type Value = Audience;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audience")
    }

    fn visit_str<E>(self, v: &str) -> Result<Audience, E> {
        Ok(if self.names(v) {
            Audience::Matched
        } else {
            Audience::NotMatched
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
        let mut found = false;
        let mut invalid = false;
        while let Some(item) = seq.next_element::<Scalar<'de>>()? {
            match item {
                Scalar::Str(aud) => found |= self.names(&aud),
                _ => invalid = true,
            }
        }
        Ok(match (invalid, found) {
            (true, _) => Audience::Invalid,
            (false, true) => Audience::Matched,
            (false, false) => Audience::NotMatched,
        })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Audience, E> {
        Ok(Audience::Invalid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Audience, E> {
        Ok(Audience::Invalid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Audience, E> {
        Ok(Audience::Invalid)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Audience, E> {
        Ok(Audience::Invalid)
    }
    fn visit_unit<E>(self) -> Result<Audience, E> {
        Ok(Audience::Invalid)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Audience, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Audience::Invalid)
    }
}

/// The value under a key that lies on one or more mapping paths (`mask`) at `depth`
/// segments in: collected where a path ends (a space-separated string, RFC 8693 §4.2, or an
/// array of strings), descended into where a path goes on. Other shapes add nothing.
struct PathValue<'a> {
    paths: Paths<'a>,
    mask: u64,
    depth: usize,
    duplicate: &'a Cell<bool>,
    found: &'a mut Vec<(u8, String)>,
}

impl PathValue<'_> {
    /// Paths of `mask` that end here.
    fn ending(&self) -> u64 {
        bits(self.mask)
            .filter(|&i| self.paths.get(i).len() == self.depth)
            .fold(0, |m, i| m | 1 << i)
    }
}

impl<'de> DeserializeSeed<'de> for PathValue<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathValue<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        // Indices are below 64 (`Paths::count`), so they fit a byte.
        for path in bits(self.ending()) {
            self.found.extend(
                v.split_ascii_whitespace()
                    .map(|s| (path as u8, s.to_owned())),
            );
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ending = self.ending();
        while let Some(item) = seq.next_element::<Scalar<'de>>()? {
            if let Scalar::Str(s) = item {
                for path in bits(ending) {
                    self.found.push((path as u8, s.clone().into_owned()));
                }
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0u64;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let mask = self.paths.matching(self.mask, self.depth, &key);
            if mask == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen & mask != 0 {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate claim"));
            }
            seen |= mask;
            map.next_value_seed(PathValue {
                paths: self.paths,
                mask,
                depth: self.depth + 1,
                duplicate: self.duplicate,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn scan_value(value: &Value, mapping: &PrincipalClaims) -> (Vec<String>, Vec<String>) {
        let text = serde_json::to_string(value).unwrap();
        let mut scanned = scan(&text, &[], mapping).unwrap();
        let p = scanned.principal(mapping, PrincipalKind::Jwt, "s");
        (p.scopes().to_vec(), p.roles().to_vec())
    }

    /// The scanner finds the same scopes and roles as the `Value` route, in the same order.
    #[test]
    fn scopes_and_roles_match_the_value_mapping() {
        let mapping = PrincipalClaims::default().roles_from(["resource_access", "api", "roles"]);
        let cases = [
            json!({ "scope": "a b  c", "roles": ["r1", 7, "r2"] }),
            json!({ "scp": ["x", "y"], "scope": "a", "permissions": "p q" }),
            json!({ "realm_access": { "roles": ["admin"], "other": 1 }, "roles": "u" }),
            json!({ "resource_access": { "api": { "roles": ["w"] }, "x": { "roles": ["no"] } } }),
            json!({ "realm_access": "flat", "scope": 42, "scp": { "nested": "no" } }),
            json!({ "scope": "a a b", "scp": ["b", "a"] }),
            json!({}),
        ];
        for claims in cases {
            let expected = mapping.principal(PrincipalKind::Jwt, "s", &claims);
            let (scopes, roles) = scan_value(&claims, &mapping);
            assert_eq!(scopes, expected.scopes(), "{claims}");
            assert_eq!(roles, expected.roles(), "{claims}");
        }
    }

    #[test]
    fn registered_claims_are_typed() {
        let text =
            r#"{"exp":10,"nbf":-1,"iat":1.5,"iss":"i","sub":7,"jti":"j\u0041","aud":["x","api"]}"#;
        let s = scan(text, &["api".to_owned()], &PrincipalClaims::none()).unwrap();
        assert_eq!(s.exp, Claim::Present(10));
        assert_eq!(s.nbf, Claim::Invalid);
        assert_eq!(s.iat, Claim::Invalid);
        assert_eq!(s.iss, Claim::Present(Cow::Borrowed("i")));
        assert_eq!(s.sub, Claim::Invalid);
        assert_eq!(s.jti, Claim::Present(Cow::Owned("jA".to_owned())));
        assert_eq!(s.aud, Audience::Matched);
        let none = scan(r#"{"aud":"api"}"#, &[], &PrincipalClaims::none()).unwrap();
        assert_eq!(none.aud, Audience::NotMatched);
        let bad = scan(
            r#"{"aud":["api",1]}"#,
            &["api".into()],
            &PrincipalClaims::none(),
        );
        assert_eq!(bad.unwrap().aud, Audience::Invalid);
    }

    #[test]
    fn duplicates_and_non_objects_are_refused() {
        let m = PrincipalClaims::default();
        for dup in [
            r#"{"exp":1,"exp":2}"#,
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"scope":"a","scope":"admin"}"#,
            r#"{"realm_access":{"roles":["a"],"roles":["admin"]}}"#,
            r#"{"s\u0075b":"a","sub":"b"}"#,
        ] {
            assert_eq!(scan(dup, &[], &m).unwrap_err(), ScanError::Duplicate);
        }
        for bad in ["[]", "1", "\"x\"", "{", "{}x", ""] {
            assert_eq!(scan(bad, &[], &m).unwrap_err(), ScanError::NotAClaimsSet);
        }
        // Invalid UTF-8, in a string the scan reads or in one it skips: `check_claims`
        // validates the whole payload before scanning it.
        let rules = super::super::validation::Rules::default();
        for bad in [
            &b"{\"exp\":10,\"sub\":\"\xff\"}"[..],
            b"{\"exp\":10,\"sub\":\"a\",\"x\":\"\xff\"}",
        ] {
            let checked = super::super::validation::check_claims(&rules, &m, bad.to_vec(), 0);
            assert_eq!(
                checked.unwrap_err(),
                super::super::TokenError::NotAClaimsSet
            );
        }
        // Unread claims may repeat (the Value route keeps the last; neither is trusted here).
        assert!(scan(r#"{"x":1,"x":2}"#, &[], &m).is_ok());
    }

    #[test]
    fn mappings_on_registered_names_take_the_value_route() {
        assert!(fast_path_fits(&PrincipalClaims::default()));
        let odd = PrincipalClaims::none().roles_from(["aud"]);
        assert!(!fast_path_fits(&odd));
        let empty = PrincipalClaims::none().roles_from(Vec::<String>::new());
        assert!(!fast_path_fits(&empty));
    }
}
