//! Docker registry tokens (the Docker token authentication spec): scopes as clients ask for
//! them, and JWTs whose `access` claim grants them, signed with marina's key (ES256 or RS256)
//! and verified against the keys a registry trusts. `alg: none`, another issuer or audience,
//! an expired token or a forged signature are never accepted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::acl::Action;

/// Why a key or a token could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The signing key file is not a PEM private key marina can use.
    #[error("the token key is not a PKCS#8 P-256 EC or RSA private key in PEM: {0}")]
    Key(String),
    /// The token is malformed, forged, expired, or for someone else.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// A resource scope a client asks a token for: `repository:<name>:<actions>`, or
/// `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`.
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// The actions asked for, as written (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope; the name may itself hold colons, so the kind is what comes before
    /// the first and the actions what comes after the last.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// Every scope of a `scope` parameter (several may be separated by spaces).
    pub fn parse_all(text: &str) -> impl Iterator<Item = Self> + '_ {
        text.split(' ').filter_map(Self::parse)
    }
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// The actions granted.
    pub actions: Vec<String>,
}

impl Granted {
    /// Whether this grants `action` on repository `name`.
    #[must_use]
    pub fn allows(&self, name: &str, action: Action) -> bool {
        self.kind == "repository"
            && self.name == name
            && self
                .actions
                .iter()
                .any(|a| a == action.as_str() || a == "*")
    }
}

/// The claims of a marina token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Who signed it.
    pub iss: String,
    /// Who it is for (a user name, or empty for anonymous).
    pub sub: String,
    /// The service it is for.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// A unique id.
    pub jti: String,
    /// What it grants.
    #[serde(default)]
    pub access: Vec<Granted>,
    /// `refresh` for a refresh token, which grants nothing but a new access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// Signs tokens with marina's key.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    algorithm: Algorithm,
    kid: String,
    issuer: String,
    service: String,
    verifier: TokenVerifier,
    public_jwk: serde_json::Value,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// How long a refresh token (`offline_token`, `access_type=offline`) lasts.
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

impl TokenIssuer {
    /// An issuer signing with the PEM private key `pem` (PKCS#8: P-256 EC for ES256, or RSA for
    /// RS256), naming itself `issuer`, for the audience `service`.
    ///
    /// # Errors
    /// [`TokenError::Key`] when the key is neither.
    pub fn from_pem(pem: &str, issuer: &str, service: &str) -> Result<Self, TokenError> {
        install_crypto();
        let der = pem_body(pem).ok_or_else(|| TokenError::Key("no PEM block found".into()))?;
        let (algorithm, public) = public_key(&der)?;
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_der(&der),
            _ => EncodingKey::from_rsa_der(&rsa_pkcs1(&der)?),
        };
        let kid = key_id(&public.1);
        let public_jwk = jwk(algorithm, &public.1, &kid);
        let verifier = TokenVerifier::new(vec![(algorithm, public.0)], issuer, service);
        Ok(Self {
            key,
            algorithm,
            kid,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            verifier,
            public_jwk,
        })
    }

    /// A new P-256 private key in PKCS#8 PEM, for a registry that was given none.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn generate_pem() -> Result<String, TokenError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(to_pem("PRIVATE KEY", der.as_ref()))
    }

    /// This issuer's public key as a JWKS document, for a registry that trusts it.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.public_jwk.clone()] })
    }

    /// The service tokens are for (their audience).
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The verifier of this issuer's own tokens.
    #[must_use]
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// Signs a token for `subject` granting `access`, valid for `lifetime`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn issue(
        &self,
        subject: &str,
        access: Vec<Granted>,
        lifetime: Duration,
        refresh: bool,
    ) -> Result<(String, Claims), TokenError> {
        let now = unix_now();
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| TokenError::Key(e.to_string()))?;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now + lifetime.as_secs(),
            nbf: now.saturating_sub(1),
            iat: now,
            jti: hex::encode(jti),
            access,
            use_: refresh.then(|| "refresh".to_owned()),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok((token, claims))
    }
}

/// Verifies tokens against trusted keys, an issuer and an audience. A token verified once is
/// remembered by its exact bytes until it expires, so a client sending the same token with
/// every request pays for the signature check once.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Claims>>>,
}

/// The most tokens remembered as verified; past it, they are forgotten and checked again.
const REMEMBERED_TOKENS: usize = 10_000;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier trusting `keys`.
    #[must_use]
    pub fn new(keys: Vec<(Algorithm, DecodingKey)>, issuer: &str, audience: &str) -> Self {
        install_crypto();
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: std::sync::Arc::default(),
        }
    }

    /// The audience tokens must name (the registry's service).
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The claims of a valid token: signed by a trusted key with that key's algorithm, from
    /// the issuer, for the audience, within its lifetime.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] otherwise.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = unix_now();
        if let Some(claims) = self.remembered().get(token)
            && claims.exp > now
        {
            return Ok(claims.clone());
        }
        let claims = self.check(token)?;
        let mut remembered = self.remembered();
        if remembered.len() >= REMEMBERED_TOKENS {
            remembered.retain(|_, c| c.exp > now);
            if remembered.len() >= REMEMBERED_TOKENS {
                remembered.clear();
            }
        }
        remembered.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Claims>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The signature and claims check itself.
    fn check(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut last = TokenError::Invalid("no trusted key for its algorithm".into());
        for (algorithm, key) in self.keys.iter().filter(|(a, _)| *a == header.alg) {
            let mut validation = Validation::new(*algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = 30;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = TokenError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }
}

/// The keys of an external token issuer, from a PEM bundle of its certificates (EC P-256 for
/// ES256, RSA for RS256), as Distribution's `rootcertbundle` holds them.
///
/// # Errors
/// [`TokenError::Key`] naming the certificate that is neither, or an empty bundle.
pub fn keys_from_certificates(pem: &str) -> Result<Vec<(Algorithm, DecodingKey)>, TokenError> {
    install_crypto();
    let mut keys = Vec::new();
    let mut block = String::new();
    for line in pem.lines() {
        block.push_str(line);
        block.push('\n');
        if line.starts_with("-----END") {
            let bytes = std::mem::take(&mut block).into_bytes();
            let key = match DecodingKey::from_ec_pem(&bytes) {
                Ok(key) => (Algorithm::ES256, key),
                Err(_) => DecodingKey::from_rsa_pem(&bytes)
                    .map(|key| (Algorithm::RS256, key))
                    .map_err(|e| TokenError::Key(format!("certificate {}: {e}", keys.len() + 1)))?,
            };
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(TokenError::Key("the bundle holds no certificate".into()));
    }
    Ok(keys)
}

/// The keys of an external token issuer, from a JWKS document.
///
/// # Errors
/// [`TokenError::Key`] when it is not a JWKS of EC P-256 or RSA keys.
pub fn keys_from_jwks(json: &str) -> Result<Vec<(Algorithm, DecodingKey)>, TokenError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
    install_crypto();
    let set: JwkSet =
        serde_json::from_str(json).map_err(|e| TokenError::Key(format!("JWKS: {e}")))?;
    let keys = set
        .keys
        .iter()
        .map(|jwk| {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => {
                    return Err(TokenError::Key(
                        "JWKS: only EC P-256 and RSA keys are used".into(),
                    ));
                }
            };
            let key =
                DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Key(format!("JWKS: {e}")))?;
            Ok((algorithm, key))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(TokenError::Key("the JWKS holds no key".into()));
    }
    Ok(keys)
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `issued_at` as RFC 3339 (UTC), from Unix seconds.
pub use marina_oci::time::rfc3339;

fn install_crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// The DER bytes of the first PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The algorithm of a PKCS#8 private key, the key that verifies its signatures, and the public
/// key's bytes (for the key id).
fn public_key(pkcs8: &[u8]) -> Result<(Algorithm, (DecodingKey, Vec<u8>)), TokenError> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair,
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8) {
        let point = pair.public_key().as_ref().to_vec();
        let (x, y) = point[1..].split_at(32);
        let key = DecodingKey::from_ec_components(&b64(x), &b64(y))
            .map_err(|e| TokenError::Key(e.to_string()))?;
        return Ok((Algorithm::ES256, (key, point)));
    }
    let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| TokenError::Key(e.to_string()))?;
    let public = pair.public_key().as_ref().to_vec();
    let components =
        aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let key = DecodingKey::from_rsa_raw_components(&components.n, &components.e);
    Ok((Algorithm::RS256, (key, public)))
}

/// jsonwebtoken signs RSA from a PKCS#1 key: the RSAPrivateKey inside the PKCS#8 wrapper.
fn rsa_pkcs1(pkcs8: &[u8]) -> Result<Vec<u8>, TokenError> {
    // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING }: the last
    // element's content is the PKCS#1 key.
    let mut reader = Der(pkcs8);
    let mut info = Der(reader.element(0x30)?);
    info.element(0x02)?;
    info.element(0x30)?;
    Ok(info.element(0x04)?.to_vec())
}

/// A minimal DER reader for the few elements above.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn element(&mut self, tag: u8) -> Result<&'a [u8], TokenError> {
        let bad = || TokenError::Key("malformed PKCS#8".into());
        let (&found, rest) = self.0.split_first().ok_or_else(bad)?;
        if found != tag {
            return Err(bad());
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(bad());
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0, |n, b| (n << 8) | usize::from(*b))
        };
        if rest.len() < length {
            return Err(bad());
        }
        let (content, after) = rest.split_at(length);
        self.0 = after;
        Ok(content)
    }
}

/// The public key as a JWK: an uncompressed P-256 point, or an RSA public key (PKCS#1 DER).
fn jwk(algorithm: Algorithm, public: &[u8], kid: &str) -> serde_json::Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    if algorithm == Algorithm::ES256 {
        let (x, y) = public[1..].split_at(32);
        return serde_json::json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": kid, "alg": "ES256", "use": "sig" });
    }
    let mut der = Der(public);
    let (n, e) = match der.element(0x30) {
        Ok(sequence) => {
            let mut inner = Der(sequence);
            (
                inner.element(0x02).unwrap_or_default(),
                inner.element(0x02).unwrap_or_default(),
            )
        }
        Err(_) => (&[][..], &[][..]),
    };
    let n = n.strip_prefix(&[0]).unwrap_or(n);
    serde_json::json!({ "kty": "RSA", "n": b64(n), "e": b64(e), "kid": kid, "alg": "RS256", "use": "sig" })
}

/// A key id from the public key: the first 16 bytes of its SHA-256, in hex.
fn key_id(public: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(&Sha256::digest(public)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::from_pem(&TokenIssuer::generate_pem().unwrap(), "marina", "registry").unwrap()
    }

    fn pull(name: &str) -> Vec<Granted> {
        vec![Granted {
            kind: "repository".into(),
            name: name.into(),
            actions: vec!["pull".into()],
        }]
    }

    #[test]
    fn scopes_parse_as_clients_write_them() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("repository", "team/app")
        );
        assert_eq!(s.actions, ["pull", "push"]);
        let s = Scope::parse("repository(plugin):localhost:5000/x:pull").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("repository", "localhost:5000/x")
        );
        assert_eq!(Scope::parse("registry:catalog:*").unwrap().actions, ["*"]);
        assert!(Scope::parse("repository").is_none());
        assert_eq!(
            Scope::parse_all("repository:a:pull repository:b:push").count(),
            2
        );
    }

    #[test]
    fn own_tokens_verify_and_grant_what_they_say() {
        let issuer = issuer();
        let (token, _) = issuer
            .issue("alice", pull("a"), Duration::from_secs(60), false)
            .unwrap();
        let claims = issuer.verifier().verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert!(claims.access[0].allows("a", Action::Pull));
        assert!(!claims.access[0].allows("a", Action::Push));
        assert!(!claims.access[0].allows("b", Action::Pull));
    }

    #[test]
    fn forged_expired_foreign_and_unsigned_tokens_are_refused() {
        let pem = TokenIssuer::generate_pem().unwrap();
        let issuer = TokenIssuer::from_pem(&pem, "marina", "registry").unwrap();
        let other = issuer_for("marina", "registry");
        let (forged, _) = other
            .issue("alice", pull("a"), Duration::from_secs(60), false)
            .unwrap();
        assert!(issuer.verifier().verify(&forged).is_err(), "another key");
        let elsewhere = TokenIssuer::from_pem(&pem, "marina", "other-service").unwrap();
        let (foreign, _) = elsewhere
            .issue("alice", pull("a"), Duration::from_secs(60), false)
            .unwrap();
        assert!(
            issuer.verifier().verify(&foreign).is_err(),
            "another audience"
        );
        let (token, _) = issuer
            .issue("alice", pull("a"), Duration::from_secs(60), false)
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            issuer
                .verifier()
                .verify(&format!("{none}.{}.", parts[1]))
                .is_err(),
            "alg none"
        );
        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["access"][0]["name"] = "b".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        );
        assert!(
            issuer.verifier().verify(&tampered).is_err(),
            "tampered payload"
        );
        claims["exp"] = 1.into();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = None;
        let expired = jsonwebtoken::encode(&header, &claims, &issuer.key).unwrap();
        assert!(issuer.verifier().verify(&expired).is_err(), "expired");
    }

    fn issuer_for(iss: &str, service: &str) -> TokenIssuer {
        TokenIssuer::from_pem(&TokenIssuer::generate_pem().unwrap(), iss, service).unwrap()
    }

    #[test]
    fn a_registry_trusting_an_issuers_jwks_accepts_its_tokens_only() {
        let issuer = issuer();
        let trusted = keys_from_jwks(&issuer.jwks().to_string()).unwrap();
        let verifier = TokenVerifier::new(trusted, "marina", "registry");
        let (token, _) = issuer
            .issue("alice", pull("a"), Duration::from_secs(60), false)
            .unwrap();
        assert_eq!(verifier.verify(&token).unwrap().sub, "alice");
        let (other, _) = super::tests::issuer()
            .issue("alice", pull("a"), Duration::from_secs(60), false)
            .unwrap();
        assert!(verifier.verify(&other).is_err());
        assert!(keys_from_jwks(r#"{"keys":[]}"#).is_err());
        assert!(keys_from_certificates("no pem here").is_err());
    }
}
