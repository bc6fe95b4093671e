//! Who is calling: bearer tokens in, a [`Principal`] out.
//!
//! The token, never the request body, says the tenant, the roles and, for a
//! vendor, cashier or employee, which vendor or employee. Handlers see only
//! the [`Principal`] a [`Verifier`] made of it, and every verifier makes it
//! through [`Principal::try_new`], so the rules tying roles to ids live in
//! one place.
//!
//! - `local`: in local mode the token is an HS256 JWT signed with a
//!   [`LocalKey`] kept in the data directory ([`LocalVerifier`]).
//! - `cognito`: in the cloud the token is a Cognito user pool's RS256 JWT,
//!   checked against the pool's published keys ([`CognitoVerifier`]); or API
//!   Gateway's Cognito authorizer has already checked it, and its claims
//!   arrive beside the request ([`principal_from_authorizer`]), which the
//!   entry point hands over as an [`Authenticated`] request extension.

mod cognito;
mod local;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use ledger_core::envelope::{Actor, Role};
use ledger_core::id::{EmployeeId, TenantId, UserId, VendorId};

pub use cognito::{
    CognitoConfig, CognitoConfigError, CognitoVerifier, JWKS_BYTES_MAX, JWKS_FETCH_TIMEOUT,
    JWKS_KEYS_MAX, JWKS_PATH, JWKS_REFETCH_INTERVAL_MIN, JWKS_STALE_MAX, JWKS_TTL, JwksPolicy,
    TokenUse, principal_from_authorizer,
};
pub use local::{
    AUDIENCE, Claims, ISSUER, KEY_FILE_NAME, KEY_LEN, LocalKey, LocalVerifier, TOKEN_TTL_DEFAULT,
};

/// Longest bearer token accepted, in bytes. A local token is a few hundred
/// bytes and a Cognito one under two kilobytes; the bound keeps a hostile
/// header from costing base64 and JSON work in proportion to its size.
pub const TOKEN_LEN_MAX: usize = 4096;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const TOKEN_LEEWAY_SECONDS: u64 = 30;

/// Why a request carries no usable identity. Every variant but
/// [`AuthError::KeysUnavailable`] answers `401 unauthorized`; they differ
/// only for logs. No variant holds token text or claim values, so displaying
/// one never leaks a credential.
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
    /// The token names a signing key its issuer does not publish.
    #[error("token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("token claims are not valid: {0}")]
    InvalidClaims(&'static str),
    /// The issuer's signing keys could not be fetched, so the token could
    /// be neither accepted nor refused: the server's fault, not the
    /// caller's, and worth a retry (`503`, never `401`, so a client does
    /// not throw away a good token).
    #[error("the token issuer's signing keys could not be fetched")]
    KeysUnavailable,
}

/// What [`Verifier::verify`] returns: a future, boxed so that the trait
/// stays object safe (`Arc<dyn Verifier>`) while a verifier may await a key
/// fetch.
pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>>;

/// Turns a bearer token into the principal it speaks for.
///
/// An implementation MUST check the token's signature, expiry, issuer and
/// audience, MUST build its principal with [`Principal::try_new`] (at least
/// one role, a vendor exactly for vendor and cashier tokens, an employee
/// exactly for employee tokens), and MUST NOT panic on any input. It MAY
/// await IO (fetching the issuer's keys), and MUST bound how often a caller
/// can make it do so.
pub trait Verifier: Send + Sync + 'static {
    /// # Errors
    /// [`AuthError`] when the token does not prove an identity.
    fn verify<'a>(&'a self, bearer_token: &'a str) -> VerifyFuture<'a>;
}

/// A principal some entry point established before the request reached the
/// router, as a request extension: API Gateway's Cognito authorizer checked
/// the token, and the Lambda entry made its claims a [`Principal`] with
/// [`principal_from_authorizer`]. The `Auth` extractor takes it instead of
/// reading the `Authorization` header.
///
/// Safe because extensions never come from the network: only code that
/// handles the request before the router (the entry point, a layer) can
/// insert one, and none in this crate does. An entry point that inserts it
/// MUST have had the token verified, as API Gateway's authorizer does
/// before it invokes the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

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

/// Every role, most privileged first: the order [`Principal::actor`] picks in.
const ROLE_PRECEDENCE: [Role; 5] = [
    Role::Admin,
    Role::Service,
    Role::Vendor,
    Role::Cashier,
    Role::Employee,
];

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
    /// A principal from what a verified token says, checking what the
    /// signature cannot: at least one role, a vendor exactly when it has the
    /// vendor or cashier role, an employee exactly when it has the employee
    /// role. Every [`Verifier`] builds its principal here.
    ///
    /// # Errors
    /// [`AuthError::InvalidClaims`] naming the rule broken.
    pub fn try_new(
        tenant_id: TenantId,
        user_id: UserId,
        roles: RoleSet,
        vendor_id: Option<VendorId>,
        employee_id: Option<EmployeeId>,
    ) -> Result<Principal, AuthError> {
        if roles.is_empty() {
            return Err(AuthError::InvalidClaims("no role"));
        }
        let sells = roles.has(Role::Vendor) || roles.has(Role::Cashier);
        match (sells, vendor_id.is_some()) {
            (true, false) => return Err(AuthError::InvalidClaims("vendor role without vendor")),
            (false, true) => return Err(AuthError::InvalidClaims("vendor without vendor role")),
            _ => {}
        }
        match (roles.has(Role::Employee), employee_id.is_some()) {
            (true, false) => {
                return Err(AuthError::InvalidClaims("employee role without employee"));
            }
            (false, true) => {
                return Err(AuthError::InvalidClaims("employee without employee role"));
            }
            _ => {}
        }
        Ok(Principal {
            tenant_id,
            user_id,
            roles,
            vendor_id,
            employee_id,
        })
    }

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

pub(crate) fn jwt_error(kind: &ErrorKind) -> AuthError {
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
pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

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
