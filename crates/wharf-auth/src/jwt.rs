//! JSON Web Tokens for the Docker token protocol: issued with ES256, and
//! verified with a key chosen by the server (never taken from the token)
//! and an algorithm pinned to that key's type.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// One resource's granted actions, as in the Docker token specification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name (or `catalog`).
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

/// The claims Wharf issues and reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (user or `robot$name`; empty for anonymous).
    pub sub: String,
    /// Audience (the registry's service name).
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Unique id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Granted access.
    #[serde(default)]
    pub access: Vec<ResourceAccess>,
    /// `refresh` for refresh tokens (which grant nothing by themselves).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "wharf_kind"
    )]
    pub kind: Option<String>,
}

/// `aud` may be a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON, or too long.
    #[error("malformed token")]
    Malformed,
    /// The header names another algorithm than the key's.
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// The header tries to bring its own key.
    #[error("token header carries a key reference ({0}); keys are chosen by the server")]
    EmbeddedKey(&'static str),
    /// The signature does not verify.
    #[error("bad token signature")]
    Signature,
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Not valid yet.
    #[error("token not valid yet")]
    NotYetValid,
    /// Issued in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// Wrong issuer.
    #[error("token issuer {0:?} is not trusted")]
    Issuer(String),
    /// Wrong audience.
    #[error("token is not for this service")]
    Audience,
}

/// The verification key and its pinned algorithm.
#[derive(Debug, Clone)]
pub enum VerifyKey {
    /// ECDSA P-256: only `ES256` tokens.
    Es256(Vec<u8>),
    /// RSA: only `RS256` tokens.
    Rs256(Vec<u8>),
}

impl VerifyKey {
    fn alg(&self) -> &'static str {
        match self {
            VerifyKey::Es256(_) => "ES256",
            VerifyKey::Rs256(_) => "RS256",
        }
    }

    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of an EC P-256 or RSA key.
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        let der = pem_decode(pem, "PUBLIC KEY")
            .ok_or_else(|| AuthError::Config("expected a PEM \"PUBLIC KEY\" block".into()))?;
        spki(&der).ok_or_else(|| {
            AuthError::Config(
                "unsupported public key: expected an EC P-256 or RSA SubjectPublicKeyInfo".into(),
            )
        })
    }

    /// Verifies a token and returns its claims.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&b64(h)?).map_err(|_| TokenError::Malformed)?;
        for key in ["jwk", "jku", "x5u", "x5c", "crit"] {
            if header.contains_key(key) {
                let name = match key {
                    "jwk" => "jwk",
                    "jku" => "jku",
                    "x5u" => "x5u",
                    "x5c" => "x5c",
                    _ => "crit",
                };
                return Err(TokenError::EmbeddedKey(name));
            }
        }
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        if alg != self.alg() {
            return Err(TokenError::Algorithm(alg.chars().take(16).collect()));
        }
        let sig = b64(s)?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = match self {
            VerifyKey::Es256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, &sig)
                    .is_ok()
            }
            VerifyKey::Rs256(rsa) => {
                signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, rsa)
                    .verify(signed, &sig)
                    .is_ok()
            }
        };
        if !ok {
            return Err(TokenError::Signature);
        }
        let claims: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| TokenError::Malformed)?;
        let now_s = secs(now);
        let leeway = LEEWAY.as_secs();
        if now_s > claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now_s.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now_s.saturating_add(leeway))
        {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.iss != issuer {
            return Err(TokenError::Issuer(claims.iss.chars().take(64).collect()));
        }
        if !claims.aud.contains(audience) {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

/// The signing key of the built-in token service.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// Generates a new P-256 key; returns it and its PKCS#8 PEM encoding.
    pub fn generate() -> Result<(Self, String), AuthError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| AuthError::Config("cannot generate a signing key".into()))?;
        let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
        Ok((Self::from_pkcs8(pkcs8.as_ref())?, pem))
    }

    /// Reads a PEM PKCS#8 `PRIVATE KEY` holding an EC P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        let der = pem_decode(pem, "PRIVATE KEY").ok_or_else(|| {
            AuthError::Config(
                "expected a PEM PKCS#8 \"PRIVATE KEY\" (make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)".into(),
            )
        })?;
        Self::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, AuthError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| {
                AuthError::Config(format!("signing key is not an EC P-256 PKCS#8 key: {e}"))
            })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let kid = hex_prefix(digest.as_ref());
        Ok(SigningKey { pair, rng, kid })
    }

    /// The matching verification key.
    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey::Es256(self.pair.public_key().as_ref().to_vec())
    }

    /// Signs claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let p = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(claims).map_err(|e| AuthError::Config(format!("claims: {e}")))?,
        );
        let signing_input = format!("{h}.{p}");
        let sig = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| AuthError::Config("signing failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn b64(s: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)
}

/// Seconds since the epoch.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decodes the first PEM block with `label`.
pub(crate) fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A DER TLV reader, just enough for SubjectPublicKeyInfo.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

fn spki(der: &[u8]) -> Option<VerifyKey> {
    let (0x30, spki, _) = tlv(der)? else {
        return None;
    };
    let (0x30, alg, rest) = tlv(spki)? else {
        return None;
    };
    let (0x03, bits, _) = tlv(rest)? else {
        return None;
    };
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    let (0x06, oid, params) = tlv(alg)? else {
        return None;
    };
    if oid == OID_EC_PUBLIC_KEY {
        let (0x06, curve, _) = tlv(params)? else {
            return None;
        };
        (curve == OID_P256 && key.len() == 65 && key[0] == 4)
            .then(|| VerifyKey::Es256(key.to_vec()))
    } else if oid == OID_RSA {
        Some(VerifyKey::Rs256(key.to_vec()))
    } else {
        None
    }
}

/// The SubjectPublicKeyInfo PEM of a P-256 public point, for sharing the
/// built-in issuer's public key with other registries.
pub fn es256_public_pem(point: &[u8]) -> String {
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(point);
    pem_encode("PUBLIC KEY", &der)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "wharf";
    const AUD: &str = "registry.test";

    fn claims(now: u64) -> Claims {
        Claims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: Audience::One(AUD.into()),
            exp: now + 300,
            nbf: Some(now),
            iat: Some(now),
            jti: "1".into(),
            access: vec![ResourceAccess {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into()],
            }],
            kind: None,
        }
    }

    fn forge(header: serde_json::Value, claims: &Claims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn round_trip_and_defects() {
        let (key, pem) = SigningKey::generate().unwrap();
        let vk = key.verify_key();
        let now = SystemTime::now();
        let n = secs(now);
        let good = key.sign(&claims(n)).unwrap();
        assert_eq!(vk.verify(&good, ISS, AUD, now).unwrap(), claims(n));
        // Reloading the key from its PEM verifies the same tokens.
        let again = SigningKey::from_pem(&pem).unwrap();
        assert!(again.verify_key().verify(&good, ISS, AUD, now).is_ok());

        // alg: none, with and without a signature.
        let none = forge(serde_json::json!({"alg": "none"}), &claims(n), b"");
        assert_eq!(
            vk.verify(&none, ISS, AUD, now),
            Err(TokenError::Algorithm("none".into()))
        );
        // HS256 "signed" with the public key as the HMAC secret.
        let VerifyKey::Es256(public) = &vk else {
            unreachable!()
        };
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let unsigned = forge(header.clone(), &claims(n), b"");
        let input = &unsigned[..unsigned.len() - 1].trim_end_matches('.');
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public),
            input.as_bytes(),
        );
        let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert_eq!(
            vk.verify(&hs, ISS, AUD, now),
            Err(TokenError::Algorithm("HS256".into()))
        );
        // Embedded key references.
        for k in ["jwk", "jku", "x5u"] {
            let mut h = serde_json::json!({"alg": "ES256"});
            h[k] = serde_json::json!("https://attacker.example/key");
            let t = forge(h, &claims(n), b"sig");
            assert!(
                matches!(
                    vk.verify(&t, ISS, AUD, now),
                    Err(TokenError::EmbeddedKey(_))
                ),
                "{k}"
            );
        }
        // Expired, not yet valid, issued in the future.
        let mut c = claims(n);
        c.exp = n - 100;
        assert_eq!(
            vk.verify(&key.sign(&c).unwrap(), ISS, AUD, now),
            Err(TokenError::Expired)
        );
        let mut c = claims(n);
        c.nbf = Some(n + 3600);
        assert_eq!(
            vk.verify(&key.sign(&c).unwrap(), ISS, AUD, now),
            Err(TokenError::NotYetValid)
        );
        let mut c = claims(n);
        c.iat = Some(n + 3600);
        assert_eq!(
            vk.verify(&key.sign(&c).unwrap(), ISS, AUD, now),
            Err(TokenError::IssuedInFuture)
        );
        // Within the leeway is fine.
        let mut c = claims(n);
        c.exp = n - 10;
        assert!(vk.verify(&key.sign(&c).unwrap(), ISS, AUD, now).is_ok());
        // Wrong audience or issuer.
        assert_eq!(
            vk.verify(&good, ISS, "other", now),
            Err(TokenError::Audience)
        );
        assert!(matches!(
            vk.verify(&good, "someone", AUD, now),
            Err(TokenError::Issuer(_))
        ));
        // Tampered payload: grant push.
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut c = claims(n);
        c.access[0].actions.push("push".into());
        let tampered_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        parts[1] = &tampered_payload;
        assert_eq!(
            vk.verify(&parts.join("."), ISS, AUD, now),
            Err(TokenError::Signature)
        );
        // Another key's signature.
        let (other, _) = SigningKey::generate().unwrap();
        assert_eq!(
            vk.verify(&other.sign(&claims(n)).unwrap(), ISS, AUD, now),
            Err(TokenError::Signature)
        );
        // Garbage.
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(
                vk.verify(bad, ISS, AUD, now),
                Err(TokenError::Malformed),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn public_key_pem_round_trip_and_pinning() {
        let (key, _) = SigningKey::generate().unwrap();
        let VerifyKey::Es256(point) = key.verify_key() else {
            unreachable!()
        };
        let pem = es256_public_pem(&point);
        let vk = VerifyKey::from_pem(&pem).unwrap();
        assert!(matches!(vk, VerifyKey::Es256(_)));
        let now = SystemTime::now();
        let t = key.sign(&claims(secs(now))).unwrap();
        assert!(vk.verify(&t, ISS, AUD, now).is_ok());
        // An RSA key only accepts RS256: an ES256 token is refused by algorithm.
        let rsa = VerifyKey::Rs256(vec![0; 10]);
        assert_eq!(
            rsa.verify(&t, ISS, AUD, now),
            Err(TokenError::Algorithm("ES256".into()))
        );
        assert!(
            VerifyKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(SigningKey::from_pem("not pem").is_err());
    }
}
