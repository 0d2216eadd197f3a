//! Bearer tokens: a tokens file holds, per principal, the blake3 hash of its token
//! (never the token) and its grants, each a set of permissions over a scope and an
//! entity prefix.
//!
//! A token is 32 random bytes in hex behind `bpk_`, so a fast hash is enough: there is
//! no password to guess. Lookups compare hashes, never tokens.

use std::collections::HashMap;
use std::path::Path;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read events, walks, projections and the catalogue; follow live streams.
    Read,
    /// Append events (and read back what was appended).
    Append,
    /// Everything, plus store-wide operations: verify, anchors, cursors, metrics.
    Admin,
}

/// Permissions over the events of one scope (or `*`, every scope) whose entity lies
/// under `prefix` (empty: every entity) by the rule of `Region::entity_prefix`: the
/// entity is the prefix, or continues it after a `:`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A scope, or `*` for every scope.
    pub scope: String,
    /// An entity prefix (`tenant:acme` covers `tenant:acme` and `tenant:acme:7`, not
    /// `tenant:acmex`); empty for every entity.
    #[serde(default)]
    pub prefix: String,
    /// What is allowed there.
    pub permissions: Vec<Permission>,
}

impl Grant {
    fn covers(&self, permission: Permission, entity: &str, scope: &str) -> bool {
        (self.scope == "*" || self.scope == scope)
            && batpak::Region::prefix_selects(&self.prefix, entity)
            && self
                .permissions
                .iter()
                .any(|p| *p == permission || *p == Permission::Admin)
    }

    fn store_wide(&self) -> bool {
        self.scope == "*" && self.prefix.is_empty()
    }
}

/// One principal's entry in the tokens file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token; recorded in the metadata of every event it appends.
    pub principal: String,
    /// `blake3:` and the hash of the token in hex.
    pub hash: String,
    /// What the token allows.
    pub grants: Vec<Grant>,
}

/// The tokens file: `{"tokens": [TokenEntry, ...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Every principal.
    pub tokens: Vec<TokenEntry>,
}

const TOKEN_PREFIX: &str = "bpk_";
const HASH_PREFIX: &str = "blake3:";

/// The hash the tokens file stores for a token.
pub fn token_hash(token: &str) -> String {
    format!("{HASH_PREFIX}{}", blake3::hash(token.as_bytes()).to_hex())
}

/// A new random token.
pub fn generate_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TOKEN_PREFIX}{hex}"))
}

impl TokensFile {
    /// Reads and checks a tokens file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<TokensFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        let file: TokensFile = serde_json::from_str(&text)
            .map_err(|e| format!("the tokens file {} is not valid: {e}", path.display()))?;
        file.check()
            .map_err(|e| format!("the tokens file {}: {e}", path.display()))?;
        Ok(file)
    }

    /// Writes the file (mode 0600), replacing it atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Adds a principal with a new token; returns the token (shown once, never
    /// stored).
    pub fn add(&mut self, principal: &str, grants: Vec<Grant>) -> Result<String, String> {
        if self.tokens.iter().any(|t| t.principal == principal) {
            return Err(format!("the principal {principal:?} already has a token"));
        }
        let token = generate_token().map_err(|e| format!("no random bytes: {e}"))?;
        self.tokens.push(TokenEntry {
            principal: principal.to_string(),
            hash: token_hash(&token),
            grants,
        });
        self.check()?;
        Ok(token)
    }

    fn check(&self) -> Result<(), String> {
        let mut seen = HashMap::new();
        for (i, entry) in self.tokens.iter().enumerate() {
            if entry.principal.is_empty() || entry.principal.chars().any(char::is_control) {
                return Err(format!(
                    "tokens[{i}].principal {:?} must be non-empty text without control characters",
                    entry.principal
                ));
            }
            let hex = entry.hash.strip_prefix(HASH_PREFIX).unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "tokens[{i}].hash must be \"blake3:\" and 64 hex digits, not {:?}",
                    entry.hash
                ));
            }
            if let Some(other) = seen.insert(entry.hash.to_ascii_lowercase(), i) {
                return Err(format!(
                    "tokens[{i}] and tokens[{other}] have the same hash"
                ));
            }
            for (g, grant) in entry.grants.iter().enumerate() {
                if grant.scope.is_empty() || grant.permissions.is_empty() {
                    return Err(format!(
                        "tokens[{i}].grants[{g}] needs a scope (or \"*\") and at least one permission"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The server has no tokens file (it listens on loopback only): everything is
    /// allowed and nothing is recorded as the principal.
    Open,
    /// A token holder.
    Principal {
        /// Its name.
        name: String,
        /// Its grants.
        grants: Vec<Grant>,
    },
}

impl Caller {
    /// The principal's name, recorded with each append.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Principal { name, .. } => Some(name),
        }
    }

    /// Whether the caller may do `permission` on this entity of this scope.
    pub fn may(&self, permission: Permission, entity: &str, scope: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal { grants, .. } => {
                grants.iter().any(|g| g.covers(permission, entity, scope))
            }
        }
    }

    /// 403 unless the caller may do `permission` on the entity.
    pub fn require(
        &self,
        permission: Permission,
        entity: &str,
        scope: &str,
    ) -> Result<(), ApiError> {
        if self.may(permission, entity, scope) {
            return Ok(());
        }
        Err(self.forbidden(format!(
            "may not {} entity {entity:?} of scope {scope:?}",
            verb(permission)
        )))
    }

    /// 403 unless the caller may administer the whole store.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require_everywhere(Permission::Admin)
    }

    /// 403 unless a grant over every scope and entity (`"scope": "*"`, no prefix)
    /// gives the caller `permission`.
    pub fn require_everywhere(&self, permission: Permission) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Principal { grants, .. }
                if grants
                    .iter()
                    .any(|g| g.store_wide() && g.covers(permission, "", "")) =>
            {
                Ok(())
            }
            Caller::Principal { .. } => Err(self.forbidden(format!(
                "needs the {} permission over every scope (\"scope\": \"*\", no prefix)",
                verb(permission)
            ))),
        }
    }

    /// 403 unless the caller may read something.
    pub fn require_some(&self, permission: Permission) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Principal { grants, .. }
                if grants.iter().any(|g| {
                    g.permissions.contains(&permission)
                        || g.permissions.contains(&Permission::Admin)
                }) =>
            {
                Ok(())
            }
            Caller::Principal { .. } => {
                Err(self.forbidden(format!("has no {} permission at all", verb(permission))))
            }
        }
    }

    fn forbidden(&self, what: String) -> ApiError {
        let who = self.principal().unwrap_or("the caller");
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token of {who:?} {what}"),
        )
        .with_details(json!({ "principal": who }))
    }
}

fn verb(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "read",
        Permission::Append => "append to",
        Permission::Admin => "administer",
    }
}

/// The server's tokens, by hash.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tokens {
    by_hash: HashMap<String, (String, Vec<Grant>)>,
}

impl Tokens {
    pub(crate) fn from_file(file: TokensFile) -> Tokens {
        Tokens {
            by_hash: file
                .tokens
                .into_iter()
                .map(|t| (t.hash.to_ascii_lowercase(), (t.principal, t.grants)))
                .collect(),
        }
    }

    /// The caller a bearer token names; 401 when it names none.
    pub(crate) fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let unauthorized =
            |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why.to_string());
        let header = header.ok_or_else(|| {
            unauthorized("this server needs a bearer token: send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?
            .trim();
        match self.by_hash.get(&token_hash(token)) {
            Some((name, grants)) => Ok(Caller::Principal {
                name: name.clone(),
                grants: grants.clone(),
            }),
            None => Err(unauthorized(
                "the bearer token is not one this server knows",
            )),
        }
    }
}
