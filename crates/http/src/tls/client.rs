//! Client certificates (mTLS): the CAs that may vouch for a client, and the name a verified
//! certificate gives its holder, the Common Name of its subject.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::{TlsError, error};

/// A verifier of client certificates signed by the CAs in the PEM bundle at `path`. Clients
/// without a certificate are let through (they may sign in otherwise, or be anonymous); a
/// certificate that does not verify fails the handshake.
pub(super) fn verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(|e| error(path, e))? {
        let certificate = certificate.map_err(|e| error(path, e))?;
        roots.add(certificate).map_err(|e| error(path, e))?;
    }
    if roots.is_empty() {
        return Err(error(path, "no CA certificate in the file"));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| error(path, e))
}

/// The Common Name of a certificate's subject (its last, as X.509 orders them), or `None`
/// when the subject has none (or an empty one, or one not in UTF-8, Printable, IA5 or Teletex
/// strings) or the DER does not read.
#[must_use]
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (_, body, _) = element(certificate)?; // Certificate
    let (_, tbs, _) = element(body)?; // TBSCertificate
    // [0] version (optional), serialNumber, signature, issuer, validity, subject, ...
    let (tag, subject) = elements(tbs).skip_while(|&(tag, _)| tag == 0xa0).nth(4)?;
    if tag != SEQUENCE {
        return None;
    }
    elements(subject)
        .filter(|&(tag, _)| tag == SET)
        .filter_map(|(_, set)| common_name_of(set))
        .last()
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// The CN in one relative distinguished name (a SET of type-and-value SEQUENCEs).
fn common_name_of(set: &[u8]) -> Option<String> {
    elements(set).find_map(|(_, pair)| {
        let (tag, oid, after) = element(pair)?;
        if tag != 0x06 || oid != COMMON_NAME {
            return None;
        }
        // UTF8String, PrintableString, IA5String, TeletexString.
        let (kind, value, _) = element(after)?;
        matches!(kind, 0x0c | 0x13 | 0x16 | 0x14)
            .then(|| String::from_utf8(value.to_vec()).ok())
            .flatten()
            .filter(|name| !name.is_empty())
    })
}

/// The elements one after another in `der`, up to the first that does not read.
fn elements(der: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::successors(element(der), |&(_, _, rest)| element(rest))
        .map(|(tag, content, _)| (tag, content))
}

/// One DER element: its tag, its content, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (bytes, rest) = rest.split_at(octets);
        let length = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (content, rest) = rest.split_at(length);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element of `tag` around `content`.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn name(parts: &[(&[u8], u8, &str)]) -> Vec<u8> {
        let sets: Vec<u8> = parts
            .iter()
            .flat_map(|(oid, kind, value)| {
                let pair = [tlv(0x06, oid), tlv(*kind, value.as_bytes())].concat();
                tlv(SET, &tlv(SEQUENCE, &pair))
            })
            .collect();
        tlv(SEQUENCE, &sets)
    }

    fn certificate(version: bool, subject: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[0x01, 0x23]));
        tbs.extend(tlv(SEQUENCE, &tlv(0x06, &[0x2a, 0x86])));
        tbs.extend(name(&[(&COMMON_NAME, 0x0c, "some CA")]));
        tbs.extend(tlv(SEQUENCE, &[0u8; 200]));
        tbs.extend_from_slice(subject);
        tbs.extend(tlv(SEQUENCE, &[0u8; 10]));
        let body = [tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat();
        tlv(SEQUENCE, &body)
    }

    #[test]
    fn the_subject_common_name_is_found() {
        let organisation: &[u8] = &[0x55, 0x04, 0x0a];
        let subject = name(&[(organisation, 0x0c, "team"), (&COMMON_NAME, 0x13, "alice")]);
        for version in [true, false] {
            let der = certificate(version, &subject);
            assert_eq!(common_name(&der).as_deref(), Some("alice"), "{version}");
        }
    }

    #[test]
    fn no_common_name_or_bad_der_is_none() {
        let organisation: &[u8] = &[0x55, 0x04, 0x0a];
        let der = certificate(true, &name(&[(organisation, 0x0c, "team")]));
        assert_eq!(common_name(&der), None);
        for cut in [0, 1, 5, der.len() / 2, der.len() - 1] {
            let short = &der[..cut];
            assert_eq!(common_name(short), None, "cut at {cut}");
        }
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
