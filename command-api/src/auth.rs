//! Who is calling: bearer tokens in, a [`Principal`] out.
//!
//! The token, never the request body, says the tenant, the roles and, for a
//! vendor, cashier or employee, which vendor or employee. Handlers see only
//! the [`Principal`] a [`Verifier`] made of it. In local mode the token is an
//! HS256 JWT signed with a [`LocalKey`] kept in the data directory; in the
//! cloud a Cognito/JWKS verifier implements the same trait.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ledger_core::envelope::{Actor, Role};
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};
use serde::{Deserialize, Serialize};

/// The `iss` of every locally signed token.
pub const ISSUER: &str = "tally-local";
/// The `aud` of every token this API accepts in local mode.
pub const AUDIENCE: &str = "tally-api";
/// Longest bearer token accepted, in bytes. A local token is a few hundred
/// bytes and a Cognito one under two kilobytes; the bound keeps a hostile
/// header from costing base64 and JSON work in proportion to its size.
pub const TOKEN_LEN_MAX: usize = 4096;
/// How long a locally minted token lives unless the caller says otherwise:
/// one working shift.
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_hours(12);
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const TOKEN_LEEWAY_SECONDS: u64 = 30;
/// Length of the HS256 secret, in bytes: the size of the SHA-256 block
/// output, as RFC 7518 §3.2 asks of an HMAC key.
pub const KEY_LEN: usize = 32;
/// The file in the data directory that holds the signing key, as hex.
pub const KEY_FILE_NAME: &str = "token.key";
/// Most bytes read from the key file: the hex key and a newline, with room
/// for trailing whitespace an editor may add.
const KEY_FILE_BYTES_MAX: u64 = 256;

/// Every role, most privileged first: the order [`Principal::actor`] picks in.
const ROLE_PRECEDENCE: [Role; 5] = [
    Role::Admin,
    Role::Service,
    Role::Vendor,
    Role::Cashier,
    Role::Employee,
];

/// Why a request carries no usable identity. Every variant answers
/// `unauthorized`; they differ only for logs. No variant holds token text or
/// claim values, so displaying one never leaks a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("token has expired")]
    Expired,
    #[error("token signature is not valid")]
    BadSignature,
    #[error("token claims are not valid: {0}")]
    InvalidClaims(&'static str),
}

/// Turns a bearer token into the principal it speaks for.
///
/// An implementation MUST check the token's signature, expiry, issuer and
/// audience, and MUST return a principal only if [`Principal::try_from`]
/// accepts its claims (or upholds the same rules): at least one role, a
/// vendor exactly for vendor and cashier tokens, an employee exactly for
/// employee tokens.
pub trait Verifier: Send + Sync + 'static {
    /// # Errors
    /// [`AuthError`] when the token does not prove an identity.
    fn verify(&self, bearer_token: &str) -> Result<Principal, AuthError>;
}

/// Extracts the token from an `Authorization` header value: `Bearer <token>`,
/// the scheme in any case (RFC 7235 §2.1).
///
/// # Errors
/// [`AuthError::Missing`] for an empty value, [`AuthError::Malformed`] for
/// another scheme, an empty or over-long token, or whitespace inside it.
pub fn bearer(header_value: &str) -> Result<&str, AuthError> {
    let value = header_value.trim();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty()
        || token.len() > TOKEN_LEN_MAX
        || token.bytes().any(|b| !b.is_ascii_graphic())
    {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// A set of roles, as a bit set: a principal has at most five.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);

    const fn bit(role: Role) -> u8 {
        match role {
            Role::Admin => 1,
            Role::Vendor => 1 << 1,
            Role::Cashier => 1 << 2,
            Role::Employee => 1 << 3,
            Role::Service => 1 << 4,
        }
    }

    pub const fn of(roles: &[Role]) -> RoleSet {
        let mut set = RoleSet::EMPTY;
        let mut i = 0;
        while i < roles.len() {
            set = set.with(roles[i]);
            i += 1;
        }
        set
    }

    #[must_use]
    pub const fn with(self, role: Role) -> RoleSet {
        RoleSet(self.0 | Self::bit(role))
    }

    pub fn insert(&mut self, role: Role) {
        *self = self.with(role);
    }

    pub const fn has(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles, most privileged first.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        ROLE_PRECEDENCE.into_iter().filter(move |&r| self.has(r))
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        let mut set = RoleSet::EMPTY;
        for role in roles {
            set.insert(role);
        }
        set
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

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

/// The verified caller, as handlers see it. Every check is inside
/// `tenant_id`: handlers scope every read and write to it.
///
/// A principal from a [`Verifier`] has at least one role, a `vendor_id`
/// exactly when it is a vendor or cashier, and an `employee_id` exactly when
/// it is an employee. The checks below still test role and id together, so a
/// principal built by hand cannot widen them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub roles: RoleSet,
    pub vendor_id: Option<VendorId>,
    pub employee_id: Option<EmployeeId>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.has(role)
    }

    /// Everything inside the tenant.
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// Who the events this principal causes name, under its most privileged
    /// role (admin, service, vendor, cashier, employee in that order).
    ///
    /// # Panics
    /// When `roles` is empty, which no verified principal is.
    pub fn actor(&self) -> Actor {
        let role = self
            .roles
            .iter()
            .next()
            .expect("a principal has at least one role");
        Actor {
            user_id: self.user_id,
            role,
        }
    }

    /// The actor under a given role, if the principal holds it: for a
    /// handler that knows which role authorised the action.
    pub fn actor_as(&self, role: Role) -> Option<Actor> {
        self.has(role).then_some(Actor {
            user_id: self.user_id,
            role,
        })
    }

    fn is_own_vendor(&self, role: Role, vendor: VendorId) -> bool {
        self.has(role) && self.vendor_id == Some(vendor)
    }

    /// The vendor's orders: admin, or that vendor's own vendor or cashier.
    pub fn can_see_vendor(&self, vendor: VendorId) -> bool {
        self.is_admin()
            || self.is_own_vendor(Role::Vendor, vendor)
            || self.is_own_vendor(Role::Cashier, vendor)
    }

    /// The vendor's dashboard and activity: admin or that vendor, not its
    /// cashiers.
    pub fn can_see_vendor_dashboard(&self, vendor: VendorId) -> bool {
        self.is_admin() || self.is_own_vendor(Role::Vendor, vendor)
    }

    /// Checkout for the vendor: admin or that vendor's cashier.
    pub fn can_record_sale(&self, vendor: VendorId) -> bool {
        self.is_admin() || self.is_own_vendor(Role::Cashier, vendor)
    }

    /// Refunds on the vendor's orders: admin or that vendor.
    pub fn can_refund(&self, vendor: VendorId) -> bool {
        self.is_admin() || self.is_own_vendor(Role::Vendor, vendor)
    }

    /// The employee's credit balance and statement: admin or the employee.
    pub fn can_see_employee(&self, employee: EmployeeId) -> bool {
        self.is_admin() || (self.has(Role::Employee) && self.employee_id == Some(employee))
    }

    /// Replenishing credit for a period: admin or the scheduler.
    pub fn can_run_replenishment(&self) -> bool {
        self.is_admin() || self.has(Role::Service)
    }
}

impl TryFrom<&Claims> for Principal {
    type Error = AuthError;

    /// Checks what the signature cannot: that roles and ids agree.
    fn try_from(claims: &Claims) -> Result<Principal, AuthError> {
        let roles: RoleSet = claims.roles.iter().copied().collect();
        if roles.is_empty() {
            return Err(AuthError::InvalidClaims("no role"));
        }
        let sells = roles.has(Role::Vendor) || roles.has(Role::Cashier);
        match (sells, claims.vendor.is_some()) {
            (true, false) => return Err(AuthError::InvalidClaims("vendor role without vendor")),
            (false, true) => return Err(AuthError::InvalidClaims("vendor without vendor role")),
            _ => {}
        }
        match (roles.has(Role::Employee), claims.employee.is_some()) {
            (true, false) => {
                return Err(AuthError::InvalidClaims("employee role without employee"));
            }
            (false, true) => {
                return Err(AuthError::InvalidClaims("employee without employee role"));
            }
            _ => {}
        }
        Ok(Principal {
            tenant_id: claims.tenant,
            user_id: claims.sub,
            roles,
            vendor_id: claims.vendor,
            employee_id: claims.employee,
        })
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

impl Verifier for LocalVerifier {
    fn verify(&self, bearer_token: &str) -> Result<Principal, AuthError> {
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

fn jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
        ErrorKind::InvalidIssuer => AuthError::InvalidClaims("wrong issuer"),
        ErrorKind::InvalidAudience => AuthError::InvalidClaims("wrong audience"),
        ErrorKind::ImmatureSignature => AuthError::InvalidClaims("not yet valid"),
        ErrorKind::MissingRequiredClaim(_) => {
            AuthError::InvalidClaims("a required claim is missing")
        }
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
            AuthError::InvalidClaims("claims do not have the expected shape")
        }
        _ => AuthError::Malformed,
    }
}

/// Seconds since the Unix epoch; a clock set before 1970 reads as 0, which
/// makes every token look expired rather than valid.
fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        key.verifier().verify(&key.mint(claims))
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
        assert_eq!(
            key().verifier().verify(&token),
            Err(AuthError::BadSignature)
        );
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
        assert_eq!(key.verifier().verify(&forged), Err(AuthError::BadSignature));
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
            key.verifier().verify(&token),
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
        assert_eq!(key.verifier().verify(&none), Err(AuthError::Malformed));

        let empty_signature = format!(
            "{}.{payload}.",
            json_part(&serde_json::json!({"alg": "HS256", "typ": "JWT"}))
        );
        assert_eq!(
            key.verifier().verify(&empty_signature),
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
        assert_eq!(key.verifier().verify(&token), Err(AuthError::BadSignature));
    }

    #[test]
    fn garbage_and_over_long_tokens_are_rejected() {
        let verifier = key().verifier();
        assert_eq!(verifier.verify(""), Err(AuthError::Missing));
        for garbage in ["abc", "a.b", "a.b.c", "..", "\u{e9}.\u{e9}.\u{e9}"] {
            assert_eq!(
                verifier.verify(garbage),
                Err(AuthError::Malformed),
                "{garbage}"
            );
        }
        let long = "a".repeat(TOKEN_LEN_MAX + 1);
        assert_eq!(verifier.verify(&long), Err(AuthError::Malformed));
    }

    #[test]
    fn errors_do_not_echo_the_token() {
        let token = key().mint(&admin());
        let error = key().verifier().verify(&token).unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(&token[..20]), "{text}");
        }
        assert_eq!(format!("{:?}", key()), "LocalKey(..)");
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(bearer("bearer abc"), Ok("abc"));
        assert_eq!(bearer("BEARER  abc "), Ok("abc"));
        assert_eq!(bearer(""), Err(AuthError::Missing));
        assert_eq!(bearer("  "), Err(AuthError::Missing));
        for bad in [
            "Bearer",
            "Bearer ",
            "Basic abc",
            "Bearerabc",
            "Bearer a b",
            "Token abc",
        ] {
            assert_eq!(bearer(bad), Err(AuthError::Malformed), "{bad:?}");
        }
        let at_limit = format!("Bearer {}", "a".repeat(TOKEN_LEN_MAX));
        assert!(bearer(&at_limit).is_ok());
        let over = format!("Bearer {}", "a".repeat(TOKEN_LEN_MAX + 1));
        assert_eq!(bearer(&over), Err(AuthError::Malformed));
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalKey::load_or_create(dir.path()).unwrap();
        let second = LocalKey::load_or_create(dir.path()).unwrap();
        assert!(check(&first, &admin()).is_ok());
        assert!(second.verifier().verify(&first.mint(&admin())).is_ok());

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

    #[test]
    fn actor_takes_the_most_privileged_role() {
        let principal = |roles: &[Role]| Principal {
            tenant_id: TenantId::new("t1"),
            user_id: UserId::new("u1"),
            roles: RoleSet::of(roles),
            vendor_id: None,
            employee_id: None,
        };
        let cases: [(&[Role], Role); 5] = [
            (&[Role::Employee, Role::Admin], Role::Admin),
            (&[Role::Vendor, Role::Service], Role::Service),
            (&[Role::Employee, Role::Cashier, Role::Vendor], Role::Vendor),
            (&[Role::Employee, Role::Cashier], Role::Cashier),
            (&[Role::Employee], Role::Employee),
        ];
        for (roles, expected) in cases {
            assert_eq!(principal(roles).actor().role, expected, "{roles:?}");
        }
        assert_eq!(principal(&[Role::Vendor]).actor_as(Role::Admin), None);
    }

    #[test]
    fn role_checks_follow_the_role_table() {
        let own = VendorId::new("v1");
        let other_vendor = VendorId::new("v2");
        let me = EmployeeId::new("e1");
        let other_employee = EmployeeId::new("e2");
        let principal = |role: Role| Principal {
            tenant_id: TenantId::new("t1"),
            user_id: UserId::new("u1"),
            roles: RoleSet::of(&[role]),
            vendor_id: matches!(role, Role::Vendor | Role::Cashier).then_some(own),
            employee_id: (role == Role::Employee).then_some(me),
        };
        // admin, see own, see other, dashboard own, dashboard other, sell own,
        // sell other, refund own, refund other, see me, see other, replenish
        #[rustfmt::skip]
        let table: [(Role, [bool; 12]); 5] = [
            (Role::Admin,    [true,  true,  true,  true,  true,  true,  true,  true,  true,  true,  true,  true ]),
            (Role::Vendor,   [false, true,  false, true,  false, false, false, true,  false, false, false, false]),
            (Role::Cashier,  [false, true,  false, false, false, true,  false, false, false, false, false, false]),
            (Role::Employee, [false, false, false, false, false, false, false, false, false, true,  false, false]),
            (Role::Service,  [false, false, false, false, false, false, false, false, false, false, false, true ]),
        ];
        for (role, expected) in table {
            let p = principal(role);
            let actual = [
                p.is_admin(),
                p.can_see_vendor(own),
                p.can_see_vendor(other_vendor),
                p.can_see_vendor_dashboard(own),
                p.can_see_vendor_dashboard(other_vendor),
                p.can_record_sale(own),
                p.can_record_sale(other_vendor),
                p.can_refund(own),
                p.can_refund(other_vendor),
                p.can_see_employee(me),
                p.can_see_employee(other_employee),
                p.can_run_replenishment(),
            ];
            assert_eq!(actual, expected, "{role:?}");
        }

        // An id without its role grants nothing.
        let stray = Principal {
            roles: RoleSet::of(&[Role::Service]),
            vendor_id: Some(own),
            employee_id: Some(me),
            ..principal(Role::Service)
        };
        assert!(!stray.can_see_vendor(own));
        assert!(!stray.can_see_employee(me));
    }
}
