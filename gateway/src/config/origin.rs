//! Web origins: `Origin` (a normalized `scheme://host:port`) and `OriginPattern` (one entry of a
//! tenant's `allowed_origins`). Pure parsing and matching; the HTTP layer uses them for CORS.

/// A normalized web origin: lowercase scheme and host, explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (an `Origin` header or a config entry; a trailing `/` is
    /// tolerated). `None` for anything else, including the opaque origin `null`.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let (scheme, rest) = raw.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest)?;
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        };
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a `Host` header value (`host[:port]`) names this origin's host and port.
    pub fn is_host(&self, host_header: &str) -> bool {
        split_host_port(host_header.trim()).is_some_and(|(host, port)| {
            host.eq_ignore_ascii_case(&self.host)
                && port.map_or(self.default_port(), |p| p.parse().unwrap_or(0)) == self.port
        })
    }

    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != self.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// `host[:port]` with a DNS name, IPv4 or bracketed IPv6 host, and nothing else (no path,
/// user info, query).
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        let valid = host[1..host.len() - 1]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !valid {
            return None;
        }
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '*');
        if !valid {
            return None;
        }
        (host, port)
    };
    if host.is_empty()
        || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((host, port))
}

/// One entry of a tenant's `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any website.
    Any,
    /// Exactly this origin.
    Exact(Origin),
    /// `scheme://*.domain[:port]`: every subdomain of `domain` (not `domain` itself).
    Subdomains(Origin),
}

impl OriginPattern {
    /// Parses one configured entry.
    ///
    /// # Errors
    /// What is wrong with it, for the configuration report.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(Self::Any);
        }
        let problem = || {
            format!(
                "`{raw}` is not an origin: write scheme://host[:port] with http or https and no path, e.g. \"https://www.example.com\" or \"https://*.example.com\""
            )
        };
        let origin = Origin::parse(raw).ok_or_else(problem)?;
        match origin.host.strip_prefix("*.") {
            Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                Ok(Self::Subdomains(Origin {
                    host: domain.to_owned(),
                    ..origin
                }))
            }
            Some(_) => Err(problem()),
            None if origin.host.contains('*') => Err(problem()),
            None => Ok(Self::Exact(origin)),
        }
    }

    /// Whether `origin` matches.
    pub fn matches(&self, origin: &Origin) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(allowed) => allowed == origin,
            Self::Subdomains(domain) => {
                domain.scheme == origin.scheme
                    && domain.port == origin.port
                    && origin
                        .host
                        .strip_suffix(domain.host.as_str())
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }
        }
    }

    /// The CSP `frame-ancestors` source for this entry.
    pub fn csp_source(&self) -> String {
        match self {
            Self::Any => "*".to_owned(),
            Self::Exact(origin) => origin.to_string(),
            Self::Subdomains(domain) => {
                let mut text = format!("{}://*.{}", domain.scheme, domain.host);
                if domain.port != domain.default_port() {
                    text.push_str(&format!(":{}", domain.port));
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn origin(raw: &str) -> Origin {
        Origin::parse(raw).unwrap()
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            origin("HTTPS://Shop.Example:443/").to_string(),
            "https://shop.example"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("http://[::1]:3000").to_string(), "http://[::1]:3000");
        for bad in [
            "null",
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/path",
            "https://user@shop.example",
            "https://shop.example:99999",
            "https://",
            "https://shop.example:",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_exact_origins_subdomains_or_anything() {
        let exact = OriginPattern::parse("https://shop.example").unwrap();
        assert!(exact.matches(&origin("https://shop.example")));
        assert!(!exact.matches(&origin("http://shop.example")));
        assert!(!exact.matches(&origin("https://shop.example:8443")));
        assert!(!exact.matches(&origin("https://evilshop.example")));
        let subs = OriginPattern::parse("https://*.shop.example").unwrap();
        assert!(subs.matches(&origin("https://www.shop.example")));
        assert!(subs.matches(&origin("https://a.b.shop.example")));
        assert!(!subs.matches(&origin("https://shop.example")));
        assert!(!subs.matches(&origin("https://evilshop.example")));
        assert!(!subs.matches(&origin("https://www.shop.example.evil")));
        assert_eq!(subs.csp_source(), "https://*.shop.example");
        assert!(
            OriginPattern::parse("*")
                .unwrap()
                .matches(&origin("http://x.y"))
        );
        for bad in [
            "https://a.*.example",
            "https://*",
            "shop.example",
            "https://*x.example",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
