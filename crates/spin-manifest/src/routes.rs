//! Spin's HTTP routing: exact routes, `:name` segments and trailing `/...` wildcards; the most
//! specific matching route wins (segment by segment: literal > `:param` > wildcard, and an exact
//! route beats a wildcard with the same prefix).

use anyhow::Result;
use std::net::SocketAddr;

/// Routes under this prefix are answered by the host (Spin: `WELL_KNOWN_PREFIX`).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Component id handling the route.
    pub component: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw: String,
    /// The route with the base applied (`spin-matched-route`).
    pub based: String,
    segs: Vec<Seg>,
    wildcard: bool,
    rank: Vec<u8>,
}

/// The result of routing one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    pub based_route: String,
    pub raw_route: String,
    /// `spin-path-info`: the part of the path matched by the trailing wildcard.
    pub path_info: String,
    pub named: Vec<(String, String)>,
}

impl RouteMatch {
    /// A match for service chaining (`http://<component>.spin.internal/path`), as Spin builds it.
    pub fn synthetic(component: &str, path: &str) -> Self {
        Self {
            component: component.to_string(),
            based_route: "/...".into(),
            raw_route: "/...".into(),
            path_info: path.to_string(),
            named: vec![],
        }
    }

    /// `spin-component-route`: the raw route without a trailing `/...`.
    pub fn raw_route_or_prefix(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
    }
}

fn sanitize(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

fn based(base: &str, route: &str) -> String {
    let route = if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    };
    format!("{}{}", sanitize(base), sanitize(&route))
}

impl Route {
    pub fn parse(base: &str, raw: &str, component: &str) -> Result<Self> {
        let based_route = based(base, raw);
        let (prefix, wildcard) = if let Some(p) = based_route.strip_suffix("/...") {
            (p, true)
        } else if let Some(p) = based_route.strip_suffix("/*") {
            (p, true)
        } else {
            (based_route.as_str(), false)
        };
        let mut segs = Vec::new();
        let bad = |why: String| {
            anyhow::anyhow!(
                "Error parsing route {based_route} associated with component {component}: {why}"
            )
        };
        for s in prefix.split('/').filter(|s| !s.is_empty()) {
            // Spin's route parser (routefinder 0.5, via crates/routes/src/lib.rs) splits
            // segments at '/' and '.': a named wildcard and an unnamed param are errors.
            for piece in s.split('.') {
                if piece.len() > 1 && piece.starts_with('*') {
                    return Err(bad(format!("since there can only be one wildcard, it doesn't need a name. replace `{piece}` with `*`")));
                }
                if piece == ":" {
                    return Err(bad("params must be named".into()));
                }
            }
            // Stricter than Spin, which accepts these but then cannot route them as written
            // (a mid-route `*` panics its router; `...` and `.` in params are split at '.').
            if s.contains("...") || s.contains('*') {
                return Err(bad("a wildcard may only end the route, as '/...' (visits-runner refuses a mid-route wildcard, which Spin cannot route)".into()));
            }
            if let Some(name) = s.strip_prefix(':') {
                if name.contains('.') {
                    return Err(bad(format!(
                        "visits-runner does not support a '.' after a ':param' (`{s}`)"
                    )));
                }
                segs.push(Seg::Param(name.to_string()));
            } else {
                segs.push(Seg::Lit(s.to_string()));
            }
        }
        let mut rank: Vec<u8> = segs
            .iter()
            .map(|s| match s {
                Seg::Lit(_) => 3,
                Seg::Param(_) => 2,
            })
            .collect();
        rank.push(if wildcard { 0 } else { 1 });
        Ok(Self {
            component: component.to_string(),
            raw: raw.to_string(),
            based: based_route,
            segs,
            wildcard,
            rank,
        })
    }

    fn matches(&self, path_segs: &[&str]) -> Option<Vec<(String, String)>> {
        if path_segs.len() < self.segs.len()
            || (!self.wildcard && path_segs.len() != self.segs.len())
        {
            return None;
        }
        let mut named = Vec::new();
        for (seg, p) in self.segs.iter().zip(path_segs) {
            match seg {
                Seg::Lit(l) if l == p => {}
                Seg::Lit(_) => return None,
                Seg::Param(n) => named.push((n.clone(), p.to_string())),
            }
        }
        Some(named)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Build from `(route, component)` pairs in manifest order. A later duplicate route replaces
    /// an earlier one (as in Spin); the replaced pairs are returned for a warning.
    pub fn build<'a>(
        base: &str,
        routes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Self, Vec<(String, String)>)> {
        let parsed = routes
            .into_iter()
            .map(|(raw, comp)| Route::parse(base, raw, comp))
            .collect::<Result<Vec<_>>>()?;
        let (router, replaced) = Self::from_routes(parsed);
        Ok((
            router,
            replaced.into_iter().map(|(r, c, _)| (r, c)).collect(),
        ))
    }

    /// Build from parsed routes in manifest order. A later duplicate (same route as written)
    /// replaces an earlier one, as in Spin (crates/routes/src/lib.rs); the replaced ones are
    /// returned as (route, replaced component, effective component) for a warning.
    pub fn from_routes(routes: Vec<Route>) -> (Self, Vec<(String, String, String)>) {
        let mut out: Vec<Route> = Vec::new();
        let mut replaced = Vec::new();
        for r in routes {
            if let Some(pos) = out.iter().position(|o| o.raw == r.raw) {
                let old = out.remove(pos);
                replaced.push((old.based, old.component, r.component.clone()));
            }
            out.push(r);
        }
        (Self { routes: out }, replaced)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        for r in &self.routes {
            if let Some(named) = r.matches(&segs) {
                if best.as_ref().is_none_or(|(b, _)| r.rank > b.rank) {
                    best = Some((r, named));
                }
            }
        }
        let (r, named) = best?;
        let path_info = if r.wildcard {
            let rest = segs[r.segs.len()..].join("/");
            match (rest.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            component: r.component.clone(),
            based_route: r.based.clone(),
            raw_route: r.raw.clone(),
            path_info,
            named,
        })
    }
}

/// Add Spin's `spin-*` request headers (overwriting any the client sent) and make the URI
/// absolute, as Spin's HTTP trigger does.
pub fn set_spin_headers<B>(
    req: &mut http::Request<B>,
    m: &RouteMatch,
    client: SocketAddr,
    scheme: &str,
) {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let abs_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let full_url = format!("{scheme}://{host}{abs_path}");
    let mut pairs: Vec<(String, String)> = vec![
        ("spin-path-info".into(), m.path_info.clone()),
        ("spin-full-url".into(), full_url.clone()),
        ("spin-matched-route".into(), m.based_route.clone()),
        ("spin-base-path".into(), "/".into()),
        ("spin-raw-component-route".into(), m.raw_route.clone()),
        (
            "spin-component-route".into(),
            m.raw_route_or_prefix().to_string(),
        ),
        ("spin-client-addr".into(), client.to_string()),
    ];
    for (name, value) in &m.named {
        pairs.push((
            format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value.clone(),
        ));
    }
    let headers = req.headers_mut();
    for (k, v) in pairs {
        let Ok(name) = k.parse::<http::HeaderName>() else {
            continue;
        };
        // What the client sent under a host header's name goes even when the host's own
        // value cannot be a header value (a route with non-ASCII text): never the client's.
        headers.remove(&name);
        if let Ok(value) = http::HeaderValue::from_str(&v) {
            headers.insert(name, value);
        }
    }
    if req.uri().authority().is_none() {
        if let Ok(uri) = full_url.parse::<http::Uri>() {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(pairs: &[(&str, &str)]) -> Router {
        Router::build("/", pairs.iter().copied()).unwrap().0
    }

    #[test]
    fn most_specific_wins() {
        let r = router(&[
            ("/...", "catchall"),
            ("/api/...", "api"),
            ("/api/exact", "exact"),
            ("/api/:id/x", "param"),
            ("/", "root"),
        ]);
        let c = |p: &str| r.route(p).map(|m| m.component);
        assert_eq!(c("/").as_deref(), Some("root"));
        assert_eq!(c("/anything/else").as_deref(), Some("catchall"));
        assert_eq!(c("/api").as_deref(), Some("api"));
        assert_eq!(c("/api/other").as_deref(), Some("api"));
        assert_eq!(c("/api/exact").as_deref(), Some("exact"));
        assert_eq!(c("/api/exact/more").as_deref(), Some("api"));
        assert_eq!(c("/api/7/x").as_deref(), Some("param"));
    }

    #[test]
    fn no_match_without_catchall() {
        let r = router(&[("/hello", "h")]);
        assert!(r.route("/").is_none());
        assert!(r.route("/hello/x").is_none());
        assert_eq!(r.route("/hello").unwrap().component, "h");
    }

    #[test]
    fn path_info_and_routes_like_spin() {
        let r = router(&[("/foo/...", "c")]);
        let m = r.route("/foo/bar").unwrap();
        assert_eq!(m.path_info, "/bar");
        assert_eq!(m.based_route, "/foo/...");
        assert_eq!(m.raw_route, "/foo/...");
        assert_eq!(m.raw_route_or_prefix(), "/foo");
        assert_eq!(r.route("/foo").unwrap().path_info, "");
        assert_eq!(r.route("/foo/").unwrap().path_info, "/");
        assert_eq!(r.route("/foo/a/b/").unwrap().path_info, "/a/b/");
        let m = router(&[("/u/:id/...", "c")]).route("/u/42/rest").unwrap();
        assert_eq!(m.named, vec![("id".to_string(), "42".to_string())]);
        assert_eq!(m.path_info, "/rest");
    }

    #[test]
    fn duplicates_replace_and_bad_routes_fail() {
        let (r, replaced) = Router::build("/", [("/a", "x"), ("/a", "y")]).unwrap();
        assert_eq!(r.route("/a").unwrap().component, "y");
        assert_eq!(replaced, vec![("/a".to_string(), "x".to_string())]);
        assert!(Router::build("/", [("/a/.../b", "x")]).is_err());
    }

    #[test]
    fn base_is_applied() {
        let (r, _) = Router::build("/base/", [("/x", "c")]).unwrap();
        let m = r.route("/base/x").unwrap();
        assert_eq!(m.based_route, "/base/x");
        assert_eq!(m.raw_route, "/x");
    }
}
