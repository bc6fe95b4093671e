//! Local mode: HS256 tokens signed with a [`LocalKey`] kept in the data
//! directory, minted by `tally token` and the demo, verified by
//! [`LocalVerifier`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ledger_core::envelope::Role;
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use serde::{Deserialize, Serialize};

use super::{
    AuthError, Principal, RoleSet, TOKEN_LEEWAY_SECONDS, TOKEN_LEN_MAX, Verifier, VerifyFuture,
    jwt_error, now_seconds,
};

/// The `iss` of every locally signed token.
pub const ISSUER: &str = "tally-local";
/// The `aud` of every token this API accepts in local mode.
pub const AUDIENCE: &str = "tally-api";
/// How long a locally minted token lives unless the caller says otherwise:
/// one working shift.
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_hours(12);
/// Length of the HS256 secret, in bytes: the size of the SHA-256 block
/// output, as RFC 7518 §3.2 asks of an HMAC key.
pub const KEY_LEN: usize = 32;
/// The file in the data directory that holds the signing key, as hex.
pub const KEY_FILE_NAME: &str = "token.key";
/// Most bytes read from the key file: the hex key and a newline, with room
/// for trailing whitespace an editor may add.
const KEY_FILE_BYTES_MAX: u64 = 256;

/// The claims of a locally signed token. Extra claims (`jti`, `nbf`, …) are
/// ignored rather than refused, as JWT consumers conventionally do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub tenant: TenantId,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee: Option<EmployeeId>,
    pub iss: String,
    pub aud: String,
    /// Seconds since the Unix epoch.
    pub iat: u64,
    /// Seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// Claims for a local token issued now and living `ttl`.
    pub fn new(
        tenant: TenantId,
        user: UserId,
        roles: &[Role],
        vendor: Option<VendorId>,
        employee: Option<EmployeeId>,
        ttl: Duration,
    ) -> Claims {
        let iat = now_seconds();
        Claims {
            sub: user,
            tenant,
            roles: RoleSet::of(roles).iter().collect(),
            vendor,
            employee,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        }
    }
}

impl TryFrom<&Claims> for Principal {
    type Error = AuthError;

    /// Checks what the signature cannot: that roles and ids agree.
    fn try_from(claims: &Claims) -> Result<Principal, AuthError> {
        Principal::try_new(
            claims.tenant,
            claims.sub,
            claims.roles.iter().copied().collect(),
            claims.vendor,
            claims.employee,
        )
    }
}

/// The HS256 secret that signs local tokens. Its `Debug` hides the bytes.
#[derive(Clone)]
pub struct LocalKey {
    secret: [u8; KEY_LEN],
}

impl LocalKey {
    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn generate() -> io::Result<LocalKey> {
        let mut secret = [0u8; KEY_LEN];
        getrandom::fill(&mut secret)
            .map_err(|e| io::Error::other(format!("no randomness for the token key: {e}")))?;
        Ok(LocalKey { secret })
    }

    /// Reads `<data_dir>/token.key`, or creates it (mode 0600) with a fresh
    /// key if it does not exist. Two processes starting at once agree on one
    /// key: the new key is written whole under a private name, then linked
    /// into place, which fails if another process linked first.
    ///
    /// # Errors
    /// IO errors, and [`io::ErrorKind::InvalidData`] when the file does not
    /// hold 64 hex digits.
    pub fn load_or_create(data_dir: &Path) -> io::Result<LocalKey> {
        let path = data_dir.join(KEY_FILE_NAME);
        match Self::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            read => return read,
        }
        fs::create_dir_all(data_dir)?;
        let key = Self::generate()?;
        let staging = data_dir.join(format!(
            ".{KEY_FILE_NAME}.{}",
            uuid::Uuid::new_v4().simple()
        ));
        let published = key
            .write_new(&staging)
            .and_then(|()| fs::hard_link(&staging, &path));
        // The staging name only ever held a copy; losing it changes nothing.
        fs::remove_file(&staging).ok();
        match published {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::read(&path),
            Err(e) => Err(e),
        }
    }

    fn read(path: &Path) -> io::Result<LocalKey> {
        let mut text = String::new();
        File::open(path)?
            .take(KEY_FILE_BYTES_MAX)
            .read_to_string(&mut text)?;
        let secret = hex_decode(text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold {} hex digits",
                    path.display(),
                    2 * KEY_LEN
                ),
            )
        })?;
        Ok(LocalKey { secret })
    }

    fn write_new(&self, path: &Path) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(hex_encode(&self.secret).as_bytes())?;
        file.write_all(b"\n")?;
        // Durable before it is visible under its real name, so a crash never
        // leaves an empty key file behind.
        file.sync_all()
    }

    /// Signs `claims` as an HS256 JWT.
    ///
    /// # Panics
    /// Never in practice: claims always serialize and the key is HMAC.
    pub fn mint(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .expect("HS256 signing of serializable claims cannot fail")
    }

    pub fn verifier(&self) -> LocalVerifier {
        LocalVerifier::new(self)
    }
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalKey(..)")
    }
}

/// Verifies tokens signed by one [`LocalKey`].
pub struct LocalVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl LocalVerifier {
    pub fn new(key: &LocalKey) -> LocalVerifier {
        // Only HS256 is listed, so `none`, other HMAC widths and asymmetric
        // algorithms are refused before any signature work.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = TOKEN_LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        LocalVerifier {
            key: DecodingKey::from_secret(&key.secret),
            validation,
        }
    }
}

impl fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalVerifier(..)")
    }
}
impl LocalVerifier {
    /// Verifies a token at once: a local key needs no IO.
    ///
    /// # Errors
    /// [`AuthError`] when the token does not prove an identity.
    pub fn check(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        if bearer_token.is_empty() {
            return Err(AuthError::Missing);
        }
        if bearer_token.len() > TOKEN_LEN_MAX {
            return Err(AuthError::Malformed);
        }
        // Parsing the header first means any later JSON error comes from
        // claims whose signature already checked out: a claims problem, not
        // a malformed token.
        jsonwebtoken::decode_header(bearer_token).map_err(|_| AuthError::Malformed)?;
        let claims = jsonwebtoken::decode::<Claims>(bearer_token, &self.key, &self.validation)
            .map_err(|e| jwt_error(e.kind()))?
            .claims;
        // The library checks `exp` and `nbf` but not `iat`.
        if claims.iat > now_seconds().saturating_add(TOKEN_LEEWAY_SECONDS) {
            return Err(AuthError::InvalidClaims("issued in the future"));
        }
        Principal::try_from(&claims)
    }
}

impl Verifier for LocalVerifier {
    fn verify<'a>(&'a self, bearer_token: &'a str) -> VerifyFuture<'a> {
        Box::pin(std::future::ready(self.check(bearer_token)))
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<[u8; KEY_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * KEY_LEN {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use ledger_core::envelope::Actor;

    use super::*;

    fn key() -> LocalKey {
        LocalKey::generate().unwrap()
    }

    fn claims(roles: &[Role], vendor: Option<&str>, employee: Option<&str>) -> Claims {
        Claims::new(
            TenantId::new("t1"),
            UserId::new("u1"),
            roles,
            vendor.map(VendorId::new),
            employee.map(EmployeeId::new),
            TOKEN_TTL_DEFAULT,
        )
    }

    fn admin() -> Claims {
        claims(&[Role::Admin], None, None)
    }

    fn check(key: &LocalKey, claims: &Claims) -> Result<Principal, AuthError> {
        key.verifier().check(&key.mint(claims))
    }

    /// Unpadded base64url, for tokens the library would refuse to build.
    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            }
        }
        out
    }

    fn json_part(value: &impl Serialize) -> String {
        b64url(&serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn mint_then_verify_round_trips() {
        let key = key();
        let principal = check(&key, &claims(&[Role::Vendor], Some("v1"), None)).unwrap();
        assert_eq!(
            principal,
            Principal {
                tenant_id: TenantId::new("t1"),
                user_id: UserId::new("u1"),
                roles: RoleSet::of(&[Role::Vendor]),
                vendor_id: Some(VendorId::new("v1")),
                employee_id: None,
            }
        );
        assert_eq!(
            principal.actor(),
            Actor {
                user_id: UserId::new("u1"),
                role: Role::Vendor
            }
        );
    }

    #[test]
    fn claims_use_the_role_names_of_the_domain() {
        let json =
            serde_json::to_value(claims(&[Role::Cashier, Role::Admin], Some("v1"), None)).unwrap();
        assert_eq!(json["roles"], serde_json::json!(["admin", "cashier"]));
        assert_eq!(json["iss"], ISSUER);
        assert_eq!(json["aud"], AUDIENCE);
        assert!(json.get("employee").is_none());
    }

    #[test]
    fn expired_token_is_rejected_but_leeway_is_granted() {
        let key = key();
        let now = now_seconds();
        let mut late = admin();
        late.exp = now - TOKEN_LEEWAY_SECONDS - 60;
        late.iat = late.exp - 3600;
        assert_eq!(check(&key, &late), Err(AuthError::Expired));

        let mut just_late = admin();
        just_late.exp = now - TOKEN_LEEWAY_SECONDS / 2;
        just_late.iat = just_late.exp - 3600;
        assert!(check(&key, &just_late).is_ok());
    }

    #[test]
    fn token_issued_in_the_future_is_rejected() {
        let key = key();
        let mut early = admin();
        early.iat = now_seconds() + TOKEN_LEEWAY_SECONDS + 60;
        early.exp = early.iat + 3600;
        assert_eq!(
            check(&key, &early),
            Err(AuthError::InvalidClaims("issued in the future"))
        );
    }

    #[test]
    fn token_signed_with_another_key_is_rejected() {
        let token = key().mint(&admin());
        assert_eq!(key().verifier().check(&token), Err(AuthError::BadSignature));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let key = key();
        let token = key.mint(&claims(&[Role::Employee], None, Some("e1")));
        let mut parts = token.split('.');
        let (header, _, signature) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let forged = format!("{header}.{}.{signature}", json_part(&admin()));
        assert_eq!(key.verifier().check(&forged), Err(AuthError::BadSignature));
    }

    #[test]
    fn wrong_issuer_or_audience_is_rejected() {
        let key = key();
        let mut foreign = admin();
        foreign.iss = "someone-else".into();
        assert_eq!(
            check(&key, &foreign),
            Err(AuthError::InvalidClaims("wrong issuer"))
        );
        let mut elsewhere = admin();
        elsewhere.aud = "another-api".into();
        assert_eq!(
            check(&key, &elsewhere),
            Err(AuthError::InvalidClaims("wrong audience"))
        );
    }

    #[test]
    fn roles_and_ids_must_agree() {
        let key = key();
        let cases = [
            (claims(&[], None, None), "no role"),
            (
                claims(&[Role::Vendor], None, None),
                "vendor role without vendor",
            ),
            (
                claims(&[Role::Cashier], None, None),
                "vendor role without vendor",
            ),
            (
                claims(&[Role::Admin], Some("v1"), None),
                "vendor without vendor role",
            ),
            (
                claims(&[Role::Employee], None, None),
                "employee role without employee",
            ),
            (
                claims(&[Role::Vendor], Some("v1"), Some("e1")),
                "employee without employee role",
            ),
        ];
        for (claims, reason) in cases {
            assert_eq!(
                check(&key, &claims),
                Err(AuthError::InvalidClaims(reason)),
                "{claims:?}"
            );
        }
        let both = claims(&[Role::Cashier, Role::Employee], Some("v1"), Some("e1"));
        assert!(check(&key, &both).is_ok());
    }

    #[test]
    fn unknown_role_is_rejected() {
        let key = key();
        let mut raw = serde_json::to_value(admin()).unwrap();
        raw["roles"] = serde_json::json!(["admin", "superuser"]);
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &raw,
            &EncodingKey::from_secret(&key.secret),
        )
        .unwrap();
        assert_eq!(
            key.verifier().check(&token),
            Err(AuthError::InvalidClaims(
                "claims do not have the expected shape"
            ))
        );
    }

    #[test]
    fn unsigned_tokens_are_rejected() {
        let key = key();
        let payload = json_part(&admin());
        let none = format!(
            "{}.{payload}.",
            json_part(&serde_json::json!({"alg": "none", "typ": "JWT"}))
        );
        assert_eq!(key.verifier().check(&none), Err(AuthError::Malformed));

        let empty_signature = format!(
            "{}.{payload}.",
            json_part(&serde_json::json!({"alg": "HS256", "typ": "JWT"}))
        );
        assert_eq!(
            key.verifier().check(&empty_signature),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let key = key();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &admin(),
            &EncodingKey::from_secret(&key.secret),
        )
        .unwrap();
        assert_eq!(key.verifier().check(&token), Err(AuthError::BadSignature));
    }

    #[test]
    fn garbage_and_over_long_tokens_are_rejected() {
        let verifier = key().verifier();
        assert_eq!(verifier.check(""), Err(AuthError::Missing));
        for garbage in ["abc", "a.b", "a.b.c", "..", "\u{e9}.\u{e9}.\u{e9}"] {
            assert_eq!(
                verifier.check(garbage),
                Err(AuthError::Malformed),
                "{garbage}"
            );
        }
        let long = "a".repeat(TOKEN_LEN_MAX + 1);
        assert_eq!(verifier.check(&long), Err(AuthError::Malformed));
    }

    #[test]
    fn errors_do_not_echo_the_token() {
        let token = key().mint(&admin());
        let error = key().verifier().check(&token).unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(&token[..20]), "{text}");
        }
        assert_eq!(format!("{:?}", key()), "LocalKey(..)");
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalKey::load_or_create(dir.path()).unwrap();
        let second = LocalKey::load_or_create(dir.path()).unwrap();
        assert!(check(&first, &admin()).is_ok());
        assert!(second.verifier().check(&first.mint(&admin())).is_ok());

        let path = dir.path().join(KEY_FILE_NAME);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEY_FILE_NAME], "no staging file is left behind");
    }

    #[test]
    fn corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE_NAME), "not hex\n").unwrap();
        let error = LocalKey::load_or_create(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn hex_round_trips() {
        let secret = key().secret;
        assert_eq!(hex_decode(&hex_encode(&secret)), Some(secret));
        assert_eq!(hex_decode(&"0".repeat(2 * KEY_LEN - 1)), None);
        assert_eq!(hex_decode(&"g".repeat(2 * KEY_LEN)), None);
        assert_eq!(hex_decode(&"+1".repeat(KEY_LEN)), None);
    }

    #[tokio::test]
    async fn the_verifier_trait_answers_as_check_does() {
        let key = key();
        let verifier: std::sync::Arc<dyn Verifier> = std::sync::Arc::new(key.verifier());
        let token = key.mint(&admin());
        assert_eq!(verifier.verify(&token).await, key.verifier().check(&token));
        assert_eq!(verifier.verify("a.b.c").await, Err(AuthError::Malformed));
    }
}
