//! Query-string parameters: parsed by name so that an unknown or malformed one is a
//! 400 naming it, and the region parameters every read shares.

use std::collections::BTreeMap;

use base64::Engine as _;
use batpak::{Region, Store};

use crate::error::{ApiError, ApiResult};
use crate::wire::parse_kind;

/// The parameters of one request, taken one by one; `finish` refuses the rest.
#[derive(Debug)]
pub(crate) struct Params {
    map: BTreeMap<String, String>,
    known: Vec<&'static str>,
}

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> ApiResult<Params> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::field("query", format!("not a query string: {e}")))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::field(&k, "given more than once"));
            }
        }
        Ok(Params {
            map,
            known: Vec::new(),
        })
    }

    pub(crate) fn text(&mut self, name: &'static str) -> Option<String> {
        self.known.push(name);
        self.map.remove(name)
    }

    pub(crate) fn number(&mut self, name: &'static str) -> ApiResult<Option<u64>> {
        match self.text(name) {
            None => Ok(None),
            Some(t) => t.parse::<u64>().map(Some).map_err(|_| {
                ApiError::field(name, format!("{t:?} is not a whole number (0 to 2^64-1)"))
            }),
        }
    }

    /// Refuses any parameter no one took.
    pub(crate) fn finish(self) -> ApiResult<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(unknown) => {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                Err(ApiError::field(
                    unknown,
                    format!(
                        "not a parameter of this endpoint (it takes: {})",
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    /// `limit`: at least 1, at most the server's page limit.
    pub(crate) fn limit(&mut self, default: usize, max: usize) -> ApiResult<usize> {
        match self.number("limit")? {
            None => Ok(default.min(max)),
            Some(0) => Err(ApiError::field("limit", "must be at least 1")),
            Some(n) if n > max as u64 => Err(ApiError::field(
                "limit",
                format!("{n} is over this server's page limit of {max}"),
            )),
            Some(n) => Ok(n as usize),
        }
    }

    /// `direction`: `forward` (default) or `backward`.
    pub(crate) fn backward(&mut self) -> ApiResult<bool> {
        match self.text("direction").as_deref() {
            None | Some("forward") => Ok(false),
            Some("backward") => Ok(true),
            Some(t) => Err(ApiError::field(
                "direction",
                format!("{t:?} is not forward or backward"),
            )),
        }
    }

    /// The region parameters: `entity`, `prefix`, `scope`, `kind` (C:T or a name),
    /// `category`, `since` and `until` (RFC 3339 or Unix nanoseconds; `until` is
    /// exclusive).
    pub(crate) fn region(&mut self, store: &Store) -> ApiResult<Region> {
        let mut region = Region::all();
        if let Some(e) = self.text("entity") {
            region = region.entity(e);
        }
        if let Some(p) = self.text("prefix") {
            region = region.entity_prefix(p);
        }
        if let Some(s) = self.text("scope") {
            region = region.scope(s);
        }
        if let Some(k) = self.text("kind") {
            region = region.kind(parse_kind(store, &k).map_err(|m| ApiError::field("kind", m))?);
        }
        if let Some(c) = self.number("category")? {
            let c = u8::try_from(c)
                .map_err(|_| ApiError::field("category", format!("{c} is over 255")))?;
            region = region.category(c);
        }
        let since = self.time("since")?;
        let until = self.time("until")?;
        match (since, until) {
            (None, None) => {}
            (s, u) => {
                let s = s.unwrap_or(0);
                let u = u.unwrap_or(u64::MAX);
                if u < s {
                    return Err(ApiError::field("until", "is before `since`"));
                }
                region = region.times(s..u);
            }
        }
        Ok(region)
    }

    fn time(&mut self, name: &'static str) -> ApiResult<Option<u64>> {
        let Some(text) = self.text(name) else {
            return Ok(None);
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Some).map_err(|_| {
                ApiError::field(name, format!("{text:?} is too large for Unix nanoseconds"))
            });
        }
        let at = humantime::parse_rfc3339_weak(&text).map_err(|e| {
            ApiError::field(
                name,
                format!("{text:?} is neither RFC 3339 time nor Unix nanoseconds: {e}"),
            )
        })?;
        let ns = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ApiError::field(name, "is before 1970"))?
            .as_nanos();
        Ok(Some(u64::try_from(ns).unwrap_or(u64::MAX)))
    }
}

/// An opaque page token: where the next page starts, for which region, in which
/// direction. Tokens are base64url of `[1, direction, sequence (8 bytes BE), first 8
/// bytes of blake3(region)]`, and a token of another region or direction is refused.
pub(crate) fn page_token(region: &Region, backward: bool, sequence: u64) -> String {
    let mut bytes = Vec::with_capacity(18);
    bytes.push(1);
    bytes.push(u8::from(backward));
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes.extend_from_slice(&region_tag(region));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn read_page_token(token: &str, region: &Region, backward: bool) -> ApiResult<u64> {
    let bad = |why: &str| ApiError::field("page", format!("not a page token of this query: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad("not base64url"))?;
    if bytes.len() != 18 || bytes[0] != 1 {
        return Err(bad("wrong length or version"));
    }
    if bytes[1] != u8::from(backward) {
        return Err(bad("it pages the other direction"));
    }
    if bytes[10..] != region_tag(region) {
        return Err(bad("it was issued for other region parameters"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[2..10]);
    Ok(u64::from_be_bytes(seq))
}

fn region_tag(region: &Region) -> [u8; 8] {
    let hash = blake3::hash(region.canonical().as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&hash.as_bytes()[..8]);
    tag
}

/// The region parameters (documentation of what [`Params::region`] takes).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RegionQuery {
    /// Only this entity.
    entity: Option<String>,
    /// Only entities under this prefix, on a `:` boundary (`tenant:a` selects
    /// `tenant:a` and `tenant:a:7`, not `tenant:ab`).
    prefix: Option<String>,
    /// Only this scope.
    scope: Option<String>,
    /// Only this kind: `C:T` or a recorded kind name.
    kind: Option<String>,
    /// Only this kind category.
    #[param(maximum = 255)]
    category: Option<u8>,
    /// From this time (RFC 3339 or Unix nanoseconds), inclusive.
    since: Option<String>,
    /// Up to this time (RFC 3339 or Unix nanoseconds), exclusive.
    until: Option<String>,
}

/// The paging parameters (documentation of what the page readers take).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageQuery {
    /// `forward` (default, oldest first) or `backward` (newest first).
    direction: Option<Direction>,
    /// Events per page (default 100, at most the server's page limit, 1,000).
    #[param(minimum = 1)]
    limit: Option<u64>,
    /// The `next` token of the previous page.
    page: Option<String>,
    /// Forward: start after this sequence.
    after: Option<u64>,
    /// Backward: start before this sequence.
    before: Option<u64>,
}

/// Which way a page reads.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}
