//! The upstream's leaf certificate, turned into the facts the policy needs.
//!
//! Input is what a host hands the filter: PEM (Envoy's `upstream.peer_certificate`,
//! documented as URL-encoded, observed plain; Kong's `ngx.kong_upstream_ssl_server_raw_cert`)
//! or DER. Only the first certificate of a PEM bundle is read: both hosts expose the leaf.

use core::fmt;
use std::net::IpAddr;

use base64::Engine;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::dn::{self, Attr, AttrValue, Dn, NormDn, Rdn};

/// Largest input accepted, in bytes (PEM or DER). A leaf with a few thousand SANs is
/// about 40 KiB of PEM; anything larger is refused before decoding.
pub const MAX_CERT_INPUT: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertError {
    Empty,
    TooLarge { size: usize },
    BadPercentEncoding,
    NoPemCertificate,
    UnterminatedPem,
    BadBase64,
    NotPemOrDer,
    Der(String),
    TrailingData(usize),
    Extensions(String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Empty => write!(f, "empty input"),
            CertError::TooLarge { size } => write!(
                f,
                "input is {size} bytes, over the {MAX_CERT_INPUT}-byte limit"
            ),
            CertError::BadPercentEncoding => write!(f, "invalid %XX escape in URL-encoded PEM"),
            CertError::NoPemCertificate => write!(f, "no `-----BEGIN CERTIFICATE-----` block"),
            CertError::UnterminatedPem => {
                write!(f, "PEM block has no `-----END CERTIFICATE-----` line")
            }
            CertError::BadBase64 => write!(f, "PEM body is not valid base64"),
            CertError::NotPemOrDer => write!(f, "input is neither PEM nor DER"),
            CertError::Der(e) => write!(f, "not a valid X.509 certificate: {e}"),
            CertError::TrailingData(n) => write!(f, "{n} unexpected bytes after the certificate"),
            CertError::Extensions(e) => write!(f, "invalid extensions: {e}"),
        }
    }
}

impl std::error::Error for CertError {}

/// Subject alternative names, by kind (RFC 5280 section 4.2.1.6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    pub ip: Vec<IpAddr>,
    pub email: Vec<String>,
}

/// Everything the policy and the headers need from one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    pub subject: Dn,
    pub issuer: Dn,
    /// Subject/issuer in OpenSSL's `-nameopt RFC2253` form (printable ASCII).
    pub subject_text: String,
    pub issuer_text: String,
    /// Subject/issuer in comparison form, computed once per certificate.
    pub subject_norm: NormDn,
    pub issuer_norm: NormDn,
    /// Serial as magnitude bytes (leading sign octets removed).
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub sha256: [u8; 32],
    pub spki_sha256: [u8; 32],
    pub san: Sans,
    pub spiffe_id: Option<String>,
    /// `rsa-2048`, `ec-p256`, `ed25519`, ...
    pub key: String,
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, CertError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        if c == b'%' {
            let hi = input.get(i + 1).and_then(|&h| (h as char).to_digit(16));
            let lo = input.get(i + 2).and_then(|&l| (l as char).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(CertError::BadPercentEncoding),
            }
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// Decodes PEM (optionally URL-encoded) or passes DER through.
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, CertError> {
    if input.is_empty() {
        return Err(CertError::Empty);
    }
    if input.len() > MAX_CERT_INPUT {
        return Err(CertError::TooLarge { size: input.len() });
    }
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    let decoded;
    let text = if input.contains(&b'%') {
        decoded = percent_decode(input)?;
        decoded.as_slice()
    } else {
        input
    };
    let Some(begin) = find(text, PEM_BEGIN) else {
        let trimmed = text.iter().find(|c| !c.is_ascii_whitespace());
        return Err(if trimmed == Some(&b'-') {
            CertError::NoPemCertificate
        } else {
            CertError::NotPemOrDer
        });
    };
    let body_start = begin + PEM_BEGIN.len();
    let rest = text.get(body_start..).unwrap_or(&[]);
    let end = find(rest, PEM_END).ok_or(CertError::UnterminatedPem)?;
    let body: Vec<u8> = rest
        .get(..end)
        .unwrap_or(&[])
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&body)
        .map_err(|_| CertError::BadBase64)
}

/// Parses PEM or DER input into [`PeerCert`].
pub fn parse(input: &[u8]) -> Result<PeerCert, CertError> {
    let der = to_der(input)?;
    parse_der(&der)
}

fn name_to_dn(name: &x509_parser::x509::X509Name<'_>) -> Dn {
    // DER order is least specific first; RFC 4514 strings and OpenSSL's RFC2253 output
    // reverse it, including the members of a multi-valued RDN.
    let mut rdns: Vec<Rdn> = name
        .iter()
        .map(|rdn| {
            let mut attrs: Vec<Attr> = rdn
                .iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let any = atv.attr_value();
                    let tag = any.header.tag().0;
                    let text = if dn::short_name(&oid).is_some() {
                        dn::decode_string(tag, any.data)
                    } else {
                        None
                    };
                    let value = match text {
                        Some(t) => AttrValue::Text(t),
                        None => AttrValue::Der(der_of_any(any)),
                    };
                    Attr { oid, value }
                })
                .collect();
            attrs.reverse();
            Rdn(attrs)
        })
        .collect();
    rdns.reverse();
    Dn { rdns }
}

/// Re-encodes a parsed value as DER (tag, definite length, content) for `#hex` output.
fn der_of_any(any: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Vec<u8> {
    let data: &[u8] = any.data;
    let mut out = Vec::with_capacity(data.len() + 6);
    let class = any.header.class() as u8;
    let constructed = u8::from(any.header.is_constructed());
    let tag = any.header.tag().0;
    if tag < 31 {
        out.push(class << 6 | constructed << 5 | tag as u8);
    } else {
        out.push(class << 6 | constructed << 5 | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().enumerate().rev() {
            out.push(if i == 0 { *g } else { *g | 0x80 });
        }
    }
    let len = data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = (len as u64).to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        let tail = be.get(skip..).unwrap_or(&[]);
        out.push(0x80 | tail.len() as u8);
        out.extend_from_slice(tail);
    }
    out.extend_from_slice(data);
    out
}

/// A SPIFFE ID per the SPIFFE-ID spec section 2: `spiffe://<trust domain><path>`, trust
/// domain of `[a-z0-9._-]`, no query, fragment, user info or port.
pub fn spiffe_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (td, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let td_ok = !td.is_empty()
        && td
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'));
    let path_ok = path.is_empty()
        || path.split('/').skip(1).all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    (td_ok && path_ok).then_some((td, path))
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
    match alg.as_str() {
        "1.2.840.113549.1.1.1" => format!("rsa-{bits}"),
        "1.2.840.113549.1.1.10" => format!("rsa-pss-{bits}"),
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ec-p256".into(),
                Some("1.3.132.0.34") => "ec-p384".into(),
                Some("1.3.132.0.35") => "ec-p521".into(),
                Some("1.3.132.0.10") => "ec-secp256k1".into(),
                _ => "ec".into(),
            }
        }
        "1.3.101.112" => "ed25519".into(),
        "1.3.101.113" => "ed448".into(),
        "1.2.840.10040.4.1" => format!("dsa-{bits}"),
        other => format!("unknown-{other}"),
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(b).ok().map(IpAddr::from)
}

/// Parses one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<PeerCert, CertError> {
    if der.len() > MAX_CERT_INPUT {
        return Err(CertError::TooLarge { size: der.len() });
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingData(rest.len()));
    }
    let used = der.get(..der.len() - rest.len()).unwrap_or(der);

    let mut san = Sans::default();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Extensions(e.to_string()))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => san.dns.push((*d).to_string()),
                GeneralName::URI(u) => san.uri.push((*u).to_string()),
                GeneralName::RFC822Name(e) => san.email.push((*e).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_from_bytes(b) {
                        san.ip.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let mut spiffe = san.uri.iter().filter(|u| u.starts_with("spiffe://"));
    let spiffe_id = match (spiffe.next(), spiffe.next()) {
        (Some(one), None) if spiffe_parts(one).is_some() => Some(one.clone()),
        _ => None,
    };

    let raw_serial = cert.raw_serial();
    // DER INTEGERs carry a leading 0x00 when the high bit is set; the serial an operator
    // sees (and lists in `revoked_serials`) is the magnitude.
    let serial: Vec<u8> = match raw_serial.iter().position(|&b| b != 0) {
        Some(first) if raw_serial.first().is_some_and(|&b| b < 0x80) => {
            raw_serial.get(first..).unwrap_or(&[]).to_vec()
        }
        Some(_) => raw_serial.to_vec(),
        None => vec![0],
    };

    let subject = name_to_dn(cert.subject());
    let issuer = name_to_dn(cert.issuer());
    // x509-parser accepts an empty or malformed attribute type; such a name could not be
    // rendered as a DN that parses back, so the certificate is refused with a reason.
    for name in [&subject, &issuer] {
        if let Some(a) = name
            .rdns
            .iter()
            .flat_map(|r| r.0.iter())
            .find(|a| !dn::is_dotted_oid(&a.oid))
        {
            return Err(CertError::Der(format!(
                "attribute type `{}` is not a valid OID",
                a.oid
            )));
        }
    }
    Ok(PeerCert {
        subject_text: subject.render(),
        issuer_text: issuer.render(),
        subject_norm: subject.normalized(),
        issuer_norm: issuer.normalized(),
        subject,
        issuer,
        serial,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256: Sha256::digest(used).into(),
        spki_sha256: Sha256::digest(cert.public_key().raw).into(),
        san,
        spiffe_id,
        key: key_type(&cert),
    })
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex, optionally with `:` between bytes.
pub fn hex(bytes: &[u8], colons: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, &b) in bytes.iter().enumerate() {
        if colons && i > 0 {
            out.push(':');
        }
        out.push(crate::dn::hex_digit(HEX_LOWER, b >> 4));
        out.push(crate::dn::hex_digit(HEX_LOWER, b & 0xf));
    }
    out
}

impl PeerCert {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256, false)
    }

    /// The RFC 7469 `pin-sha256` value.
    pub fn spki_pin(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.spki_sha256)
    }

    pub fn serial_hex(&self) -> String {
        hex(&self.serial, true)
    }

    /// The `inspect` JSON object (DESIGN section 4).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "subject": self.subject_text,
            "issuer": self.issuer_text,
            "serial": self.serial_hex(),
            "not_before": crate::timefmt::format_rfc3339(self.not_before),
            "not_after": crate::timefmt::format_rfc3339(self.not_after),
            "sha256": self.sha256_hex(),
            "spki_sha256": self.spki_pin(),
            "san": {
                "dns": self.san.dns,
                "uri": self.san.uri,
                "ip": self.san.ip.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "email": self.san.email,
            },
            "spiffe_id": self.spiffe_id,
            "key": self.key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_inputs_that_are_not_certificates() {
        let big = vec![b'A'; MAX_CERT_INPUT + 1];
        let cases: Vec<(&[u8], CertError)> = vec![
            (b"", CertError::Empty),
            (
                &big,
                CertError::TooLarge {
                    size: MAX_CERT_INPUT + 1,
                },
            ),
            (b"hello world", CertError::NotPemOrDer),
            (
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                CertError::NoPemCertificate,
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nMIIB",
                CertError::UnterminatedPem,
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
                CertError::BadBase64,
            ),
            (b"-----BEGIN%20CERTIFICATE%2", CertError::BadPercentEncoding),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Err(want));
        }
        assert!(matches!(
            parse(&[0x30, 0x03, 0x02, 0x01, 0x01]),
            Err(CertError::Der(_))
        ));
        let pem = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse(pem), Err(CertError::Der(_))));
    }

    #[test]
    fn recognises_spiffe_ids_strictly() {
        for (uri, want) in [
            (
                "spiffe://example.org/ns/prod/sa/orders",
                Some(("example.org", "/ns/prod/sa/orders")),
            ),
            ("spiffe://example.org", Some(("example.org", ""))),
            ("SPIFFE://example.org/x", None),
            ("spiffe://Example.org/x", None),
            ("spiffe://user@example.org/x", None),
            ("spiffe://example.org:443/x", None),
            ("spiffe://example.org/a//b", None),
            ("spiffe://example.org/a/../b", None),
            ("spiffe://example.org/a?q=1", None),
            ("spiffe:///path", None),
            ("https://example.org/spiffe://x", None),
        ] {
            assert_eq!(spiffe_parts(uri), want, "{uri}");
        }
    }

    #[test]
    fn hex_renders_lower_case_with_optional_colons() {
        assert_eq!(hex(&[0x0c, 0xb9, 0xff], true), "0c:b9:ff");
        assert_eq!(hex(&[0x0c, 0xb9, 0xff], false), "0cb9ff");
    }
}
