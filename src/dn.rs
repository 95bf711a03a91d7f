//! Distinguished names: RFC 4514 parsing, rendering and matching.
//!
//! A [`Dn`] keeps its RDNs in RFC 4514 string order (most specific first, the reverse of
//! the DER order). Rendering follows what `openssl x509 -nameopt RFC2253` prints, so that
//! operators can paste OpenSSL output into a config and see the same text in headers:
//! short names, `,` between RDNs and `+` inside one, RFC 4514 section 2.4 escaping, and
//! every byte that is a control character or not ASCII written as `\XX`. Rendered names
//! are therefore always printable ASCII, which is what an HTTP header value may carry.
//!
//! Matching follows RFC 5280 section 7.1 in the approximation most deployments need:
//! attribute types compared by OID, values compared after trimming and collapsing spaces
//! and case-folding (caseIgnoreMatch), multi-valued RDNs compared as sets.

use core::fmt;

/// Attribute types we know by name: (dotted OID, the short name OpenSSL prints, aliases
/// accepted in configs, compared case-insensitively).
const ATTRIBUTE_TYPES: &[(&str, &str, &[&str])] = &[
    ("2.5.4.3", "CN", &["commonName"]),
    ("2.5.4.4", "SN", &["surname"]),
    ("2.5.4.5", "serialNumber", &[]),
    ("2.5.4.6", "C", &["countryName"]),
    ("2.5.4.7", "L", &["localityName"]),
    ("2.5.4.8", "ST", &["S", "stateOrProvinceName"]),
    ("2.5.4.9", "street", &["streetAddress"]),
    ("2.5.4.10", "O", &["organizationName"]),
    ("2.5.4.11", "OU", &["organizationalUnitName"]),
    ("2.5.4.12", "title", &[]),
    ("2.5.4.13", "description", &[]),
    ("2.5.4.15", "businessCategory", &[]),
    ("2.5.4.17", "postalCode", &[]),
    ("2.5.4.41", "name", &[]),
    ("2.5.4.42", "GN", &["givenName"]),
    ("2.5.4.43", "initials", &[]),
    ("2.5.4.44", "generationQualifier", &[]),
    ("2.5.4.46", "dnQualifier", &[]),
    ("2.5.4.65", "pseudonym", &[]),
    ("2.5.4.97", "organizationIdentifier", &[]),
    ("0.9.2342.19200300.100.1.1", "UID", &["userId"]),
    ("0.9.2342.19200300.100.1.25", "DC", &["domainComponent"]),
    ("1.2.840.113549.1.9.1", "emailAddress", &["E", "email"]),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL", &[]),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST", &[]),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC", &[]),
];

/// The short name OpenSSL prints for a dotted OID, if we know it.
pub fn short_name(oid: &str) -> Option<&'static str> {
    ATTRIBUTE_TYPES
        .iter()
        .find(|(o, _, _)| *o == oid)
        .map(|(_, n, _)| *n)
}

/// Resolves an attribute type written in a config (`CN`, `commonName`, `2.5.4.3`,
/// `OID.2.5.4.3`) to its dotted OID.
pub fn resolve_type(name: &str) -> Option<String> {
    let name = name.trim();
    for (oid, short, aliases) in ATTRIBUTE_TYPES {
        if short.eq_ignore_ascii_case(name) || aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        {
            return Some((*oid).to_string());
        }
    }
    let dotted = name
        .strip_prefix("OID.")
        .or_else(|| name.strip_prefix("oid."))
        .unwrap_or(name);
    is_dotted_oid(dotted).then(|| dotted.to_string())
}

/// A dotted OID with at least two arcs and no leading zeros (`2.5.4.3`).
pub fn is_dotted_oid(s: &str) -> bool {
    let mut arcs = 0;
    for arc in s.split('.') {
        if arc.is_empty()
            || !arc.bytes().all(|b| b.is_ascii_digit())
            || (arc.len() > 1 && arc.starts_with('0'))
        {
            return false;
        }
        arcs += 1;
    }
    arcs >= 2
}

/// An attribute value: text for string types, the DER encoding otherwise (RFC 4514
/// section 2.4 `#hexstring` form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrValue {
    Text(String),
    Der(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Dotted OID of the attribute type.
    pub oid: String,
    pub value: AttrValue,
}

/// One relative distinguished name: one or more attributes (multi-valued with `+`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rdn(pub Vec<Attr>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dn {
    /// RDNs in RFC 4514 string order (most specific first).
    pub rdns: Vec<Rdn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnError {
    Empty,
    MissingEquals { at: usize },
    UnknownType(String),
    BadEscape { at: usize },
    BadHex { at: usize },
    UnescapedSpecial { at: usize, ch: char },
    EmptyRdn { at: usize },
}

impl fmt::Display for DnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnError::Empty => write!(f, "empty distinguished name"),
            DnError::MissingEquals { at } => write!(f, "expected `type=value` at byte {at}"),
            DnError::UnknownType(t) => write!(f, "unknown attribute type `{t}` (use a short name such as CN, O, OU, C or a dotted OID)"),
            DnError::BadEscape { at } => write!(f, "invalid escape at byte {at} (RFC 4514 section 2.4)"),
            DnError::BadHex { at } => write!(f, "invalid #hexstring value at byte {at}"),
            DnError::UnescapedSpecial { at, ch } => write!(f, "unescaped `{ch}` at byte {at} (escape it as `\\{ch}`)"),
            DnError::EmptyRdn { at } => write!(f, "empty RDN at byte {at}"),
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a DER-encoded directory string into text (UTF-8), following the conversions
/// OpenSSL applies with `-nameopt utf8` semantics: T61String as Latin-1, BMPString as
/// UCS-2 big-endian, UniversalString as UCS-4 big-endian. Returns `None` for non-string
/// tags or undecodable content.
pub fn decode_string(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString
        12 | 18 | 19 | 22 | 26 => core::str::from_utf8(data).ok().map(str::to_string),
        // T61String / TeletexString: treated as ISO 8859-1, as OpenSSL does.
        20 => Some(data.iter().map(|&b| char::from(b)).collect()),
        // BMPString
        30 => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes(<[u8; 2]>::try_from(c).unwrap_or_default()));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        // UniversalString
        28 => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes(
                        <[u8; 4]>::try_from(c).unwrap_or_default(),
                    ))
                })
                .collect::<Option<String>>()
        }
        _ => None,
    }
}

/// Parses an RFC 4514 string such as `CN=orders.internal,O=Example Corp,C=US`.
pub fn parse(input: &str) -> Result<Dn, DnError> {
    let b = input.as_bytes();
    if input.trim().is_empty() {
        return Err(DnError::Empty);
    }
    let mut rdns = Vec::new();
    let mut current: Vec<Attr> = Vec::new();
    let mut i = 0;
    loop {
        // attribute type
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        let type_start = i;
        while let Some(&c) = b.get(i) {
            if c == b'=' || c == b',' || c == b'+' {
                break;
            }
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(if i == type_start && current.is_empty() {
                DnError::EmptyRdn { at: type_start }
            } else {
                DnError::MissingEquals { at: type_start }
            });
        }
        let type_name = input.get(type_start..i).unwrap_or("").trim();
        if type_name.is_empty() {
            return Err(DnError::MissingEquals { at: type_start });
        }
        let oid =
            resolve_type(type_name).ok_or_else(|| DnError::UnknownType(type_name.to_string()))?;
        i += 1; // '='
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        let value = if b.get(i) == Some(&b'#') {
            // #hexstring: the BER/DER encoding of the value
            i += 1;
            let start = i;
            let mut der = Vec::new();
            while let (Some(&h), Some(&l)) = (b.get(i), b.get(i + 1)) {
                match (hex_val(h), hex_val(l)) {
                    (Some(h), Some(l)) => der.push(h << 4 | l),
                    _ => break,
                }
                i += 2;
            }
            if der.is_empty() {
                return Err(DnError::BadHex { at: start });
            }
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            if !matches!(b.get(i), None | Some(b',' | b'+' | b';')) {
                return Err(DnError::BadHex { at: start });
            }
            der_to_value(&der)
        } else {
            let mut bytes = Vec::new();
            // Index just past the last byte that must be kept (escaped trailing spaces).
            let mut keep = 0;
            while let Some(&c) = b.get(i) {
                match c {
                    b',' | b'+' | b';' => break,
                    b'\\' => {
                        let at = i;
                        match b.get(i + 1) {
                            Some(
                                &e @ (b' ' | b'"' | b'#' | b'+' | b',' | b';' | b'<' | b'=' | b'>'
                                | b'\\'),
                            ) => {
                                bytes.push(e);
                                i += 2;
                            }
                            Some(&h) => {
                                let l = b.get(i + 2).copied().and_then(hex_val);
                                match (hex_val(h), l) {
                                    (Some(h), Some(l)) => bytes.push(h << 4 | l),
                                    _ => return Err(DnError::BadEscape { at }),
                                }
                                i += 3;
                            }
                            None => return Err(DnError::BadEscape { at }),
                        }
                        keep = bytes.len();
                    }
                    b'"' | b'<' | b'>' => {
                        return Err(DnError::UnescapedSpecial {
                            at: i,
                            ch: char::from(c),
                        })
                    }
                    _ => {
                        bytes.push(c);
                        i += 1;
                        if c != b' ' {
                            keep = bytes.len();
                        }
                    }
                }
            }
            bytes.truncate(keep);
            match String::from_utf8(bytes) {
                Ok(s) => AttrValue::Text(s),
                Err(e) => AttrValue::Text(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            }
        };
        current.push(Attr { oid, value });
        match b.get(i) {
            None => {
                rdns.push(Rdn(core::mem::take(&mut current)));
                break;
            }
            Some(b'+') => i += 1,
            Some(_) => {
                // ',' or ';' (RFC 1779 separator, accepted for leniency)
                rdns.push(Rdn(core::mem::take(&mut current)));
                i += 1;
                if b.get(i..)
                    .is_none_or(|rest| rest.iter().all(|&c| c == b' '))
                {
                    return Err(DnError::EmptyRdn { at: i });
                }
            }
        }
    }
    Ok(Dn { rdns })
}

/// Turns a DER-encoded value into text when it is a string type we can decode.
fn der_to_value(der: &[u8]) -> AttrValue {
    match der_string(der) {
        Some(text) => AttrValue::Text(text),
        None => AttrValue::Der(der.to_vec()),
    }
}

/// Decodes a complete DER TLV of a directory string type (short or long definite length)
/// into text; `None` for anything else.
fn der_string(der: &[u8]) -> Option<String> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for &b in der.get(2..2 + n)? {
            len = len << 8 | usize::from(b);
        }
        (len, 2 + n)
    };
    if der.len() != header.checked_add(len)? {
        return None;
    }
    decode_string(u32::from(tag), der.get(header..)?)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The hex digit for a nibble (`n` < 16) from `table`.
pub(crate) fn hex_digit(table: &[u8; 16], n: u8) -> char {
    char::from(table.get(usize::from(n & 0xf)).copied().unwrap_or(b'0'))
}

/// Appends a value escaped the way OpenSSL's RFC2253 name option does.
fn escape_into(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let last = bytes.len().saturating_sub(1);
    for (i, &c) in bytes.iter().enumerate() {
        let needs_bs = matches!(c, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (c == b'#' || c == b' '))
            || (i == last && c == b' ');
        if !(0x20..0x7f).contains(&c) {
            out.push('\\');
            out.push(hex_digit(HEX_UPPER, c >> 4));
            out.push(hex_digit(HEX_UPPER, c & 0xf));
        } else {
            if needs_bs {
                out.push('\\');
            }
            out.push(char::from(c));
        }
    }
}

impl Dn {
    /// Renders the name in OpenSSL's RFC2253 form (printable ASCII only).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (ri, rdn) in self.rdns.iter().enumerate() {
            if ri > 0 {
                out.push(',');
            }
            for (ai, attr) in rdn.0.iter().enumerate() {
                if ai > 0 {
                    out.push('+');
                }
                match short_name(&attr.oid) {
                    Some(name) => out.push_str(name),
                    None => out.push_str(&attr.oid),
                }
                out.push('=');
                match (&attr.value, short_name(&attr.oid)) {
                    (AttrValue::Text(t), Some(_)) => escape_into(&mut out, t),
                    // Unknown types and non-string values are dumped as DER, like OpenSSL.
                    (AttrValue::Text(t), None) => push_hex_der_of_text(&mut out, t),
                    (AttrValue::Der(d), _) => push_hex(&mut out, d),
                }
            }
        }
        out
    }

    /// Every value of the attribute type `oid`, in the name.
    pub fn values_of<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a AttrValue> + 'a {
        self.rdns
            .iter()
            .flat_map(|r| r.0.iter())
            .filter(move |a| a.oid == oid)
            .map(|a| &a.value)
    }

    /// RFC 5280 section 7.1 style equality: same RDN sequence, each RDN the same set.
    pub fn matches(&self, other: &Dn) -> bool {
        self.normalized().matches(&other.normalized())
    }

    /// The comparison form, computed once (per configuration, per certificate) so that
    /// matching on the request path folds nothing and allocates nothing.
    pub fn normalized(&self) -> NormDn {
        NormDn {
            rdns: self
                .rdns
                .iter()
                .map(|rdn| {
                    rdn.0
                        .iter()
                        .map(|a| {
                            let v = match &a.value {
                                AttrValue::Text(t) => NormValue::Text(fold(t)),
                                AttrValue::Der(d) => match der_string(d) {
                                    Some(t) => NormValue::Text(fold(&t)),
                                    None => NormValue::Der(d.clone()),
                                },
                            };
                            (a.oid.clone(), v)
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// A normalised value: folded text (see [`fold`]), or DER for non-string values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NormValue {
    Text(String),
    Der(Vec<u8>),
}

/// A DN in comparison form: RDNs of (OID, normalised value), in RFC 4514 order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NormDn {
    pub rdns: Vec<Vec<(String, NormValue)>>,
}

impl NormDn {
    /// Same RDN sequence, each RDN the same set of (type, value).
    pub fn matches(&self, other: &NormDn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self.rdns.iter().zip(&other.rdns).all(|(a, b)| {
                a.len() == b.len()
                    && a.iter().all(|x| b.contains(x))
                    && b.iter().all(|y| a.contains(y))
            })
    }

    /// The folded text values of the attribute type `oid`.
    pub fn texts_of<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rdns
            .iter()
            .flatten()
            .filter(move |(o, _)| o == oid)
            .filter_map(|(_, v)| match v {
                NormValue::Text(t) => Some(t.as_str()),
                NormValue::Der(_) => None,
            })
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.push('#');
    for &b in bytes {
        out.push(hex_digit(HEX_UPPER, b >> 4));
        out.push(hex_digit(HEX_UPPER, b & 0xf));
    }
}

fn push_hex_der_of_text(out: &mut String, text: &str) {
    // A text value under an unknown type came from a config; render it as a UTF8String.
    let mut der = vec![12u8];
    let len = text.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let be = (len as u32).to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        let tail = be.get(skip..).unwrap_or(&[]);
        der.push(0x80 | tail.len() as u8);
        der.extend_from_slice(tail);
    }
    der.extend_from_slice(text.as_bytes());
    push_hex(out, &der);
}

/// Compares two values with caseIgnoreMatch-like semantics (RFC 4518, simplified:
/// insignificant spaces removed, case folded). A DER value of a string type (how a
/// certificate's attribute of an unnamed type is kept) compares as its text.
pub fn value_equal(a: &AttrValue, b: &AttrValue) -> bool {
    match (a, b) {
        (AttrValue::Text(x), AttrValue::Text(y)) => fold(x) == fold(y),
        (AttrValue::Der(x), AttrValue::Der(y)) => x == y,
        (AttrValue::Text(t), AttrValue::Der(d)) | (AttrValue::Der(d), AttrValue::Text(t)) => {
            der_string(d).is_some_and(|s| fold(&s) == fold(t))
        }
    }
}

/// Normalises a value for comparison: surrounding spaces dropped, inner runs of spaces
/// collapsed to one, case folded.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// `*` glob over folded text: `orders*` matches `Orders-API`. Used by
/// `subject.attributes`/`issuer.attributes` patterns.
pub fn glob_match(pattern_folded: &str, value: &str) -> bool {
    let v = fold(value);
    glob(pattern_folded.as_bytes(), v.as_bytes())
}

/// [`glob_match`] for a value that is already folded (no allocation).
pub fn glob_folded(pattern_folded: &str, value_folded: &str) -> bool {
    glob(pattern_folded.as_bytes(), value_folded.as_bytes())
}

fn glob(p: &[u8], v: &[u8]) -> bool {
    // Iterative matcher with single backtrack point; linear in practice.
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(&c) if Some(&c) == v.get(vi) => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    pi = sp + 1;
                    vi = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_round_trip() {
        for (input, rendered) in [
            (
                "CN=orders.internal,O=Example Corp,C=US",
                "CN=orders.internal,O=Example Corp,C=US",
            ),
            ("cn=orders , o = Example Corp", "CN=orders,O=Example Corp"),
            ("commonName=a,2.5.4.10=b", "CN=a,O=b"),
            ("OID.2.5.4.3=a", "CN=a"),
            ("CN=a+OU=b,O=c", "CN=a+OU=b,O=c"),
            (
                "CN=a\\,b\\+c\\;d\\\"e\\<f\\>g\\\\h",
                "CN=a\\,b\\+c\\;d\\\"e\\<f\\>g\\\\h",
            ),
            ("CN=\\#hash\\ ", "CN=\\#hash\\ "),
            ("CN=caf\\C3\\A9", "CN=caf\\C3\\A9"),
            ("CN=café", "CN=caf\\C3\\A9"),
            ("CN=#0C0568656C6C6F", "CN=hello"),
            ("1.2.3.4=#0403010203", "1.2.3.4=#0403010203"),
            ("CN=line\\0Abreak", "CN=line\\0Abreak"),
            (
                "emailAddress=a@b.c,E=d@e.f",
                "emailAddress=a@b.c,emailAddress=d@e.f",
            ),
        ] {
            let dn = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(dn.render(), rendered, "{input}");
            assert_eq!(parse(&dn.render()).unwrap(), dn, "re-parse of {input}");
        }
    }

    #[test]
    fn long_values_of_unnamed_types_survive_render_and_parse() {
        let long = "a".repeat(300);
        let dn = parse(&format!("1.2.3.4={long}")).unwrap();
        let rendered = dn.render();
        assert!(rendered.starts_with("1.2.3.4=#0C82012C"), "{rendered}");
        assert_eq!(parse(&rendered).unwrap(), dn);
        // A certificate keeps such a value as DER; it still matches the text form.
        let mut der = vec![0x0c, 0x82, 0x01, 0x2c];
        der.extend_from_slice(long.as_bytes());
        let from_cert = Dn {
            rdns: vec![Rdn(vec![Attr {
                oid: "1.2.3.4".into(),
                value: AttrValue::Der(der),
            }])],
        };
        assert!(from_cert.matches(&dn) && dn.matches(&from_cert));
        assert!(from_cert.matches(&parse(&from_cert.render()).unwrap()));
    }

    #[test]
    fn refuses_malformed_names() {
        for (input, expected) in [
            ("", DnError::Empty),
            ("CN", DnError::MissingEquals { at: 0 }),
            ("XX=a", DnError::UnknownType("XX".into())),
            ("CN=a,", DnError::EmptyRdn { at: 5 }),
            ("CN=a\\", DnError::BadEscape { at: 4 }),
            ("CN=a\\zz", DnError::BadEscape { at: 4 }),
            ("CN=#zz", DnError::BadHex { at: 4 }),
            ("CN=a<b", DnError::UnescapedSpecial { at: 4, ch: '<' }),
            (",CN=a", DnError::EmptyRdn { at: 0 }),
        ] {
            assert_eq!(parse(input), Err(expected), "{input}");
        }
    }

    #[test]
    fn rendering_never_emits_control_characters() {
        let dn = Dn {
            rdns: vec![Rdn(vec![Attr {
                oid: "2.5.4.3".into(),
                value: AttrValue::Text("evil\r\nx-injected: 1\u{0}\u{202e}\u{7f}".into()),
            }])],
        };
        let out = dn.render();
        assert!(out.bytes().all(|b| (0x20..0x7f).contains(&b)), "{out}");
        assert_eq!(out, "CN=evil\\0D\\0Ax-injected: 1\\00\\E2\\80\\AE\\7F");
    }

    #[test]
    fn matching_ignores_case_spacing_and_rdn_member_order() {
        let a = parse("CN=Orders  API+OU=Team,O=Example Corp").unwrap();
        for same in [
            "cn=orders api+ou=team,o=example corp",
            "OU=Team+CN=Orders API, O= Example Corp ",
        ] {
            assert!(a.matches(&parse(same).unwrap()), "{same}");
        }
        for different in [
            "CN=Orders API,O=Example Corp",
            "CN=Orders API+OU=Team,O=Example",
            "O=Example Corp,CN=Orders API+OU=Team",
        ] {
            assert!(!a.matches(&parse(different).unwrap()), "{different}");
        }
    }

    #[test]
    fn glob_matches_star_anywhere() {
        for (p, v, want) in [
            ("orders*", "Orders-API", true),
            ("*api", "orders-api", true),
            ("o*s-*i", "orders-api", true),
            ("orders", "orders-api", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(&fold(p), v), want, "{p} vs {v}");
        }
    }

    #[test]
    fn decodes_legacy_string_types() {
        assert_eq!(decode_string(30, &[0, b'h', 0, 0xe9]), Some("hé".into()));
        assert_eq!(decode_string(28, &[0, 0, 0, b'x']), Some("x".into()));
        assert_eq!(decode_string(20, &[b'a', 0xe9]), Some("aé".into()));
        assert_eq!(decode_string(30, &[0xd8, 0x00]), None);
        assert_eq!(decode_string(2, &[1]), None);
    }
}
