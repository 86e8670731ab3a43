//! What `gbfs:` names: a discovery URL, a JCDecaux contract slug or `NAME=URL`, and the
//! discovery URL and contract name each target stands for.

use crate::SourceError;
use crate::jcdecaux::contract_key;
use reqwest::Url;
use std::fmt;
use std::str::FromStr;

/// Where the cyclocity host serves JCDecaux's feeds.
const CYCLOCITY_HOST: &str = "api.cyclocity.fr";

/// Vélib' Métropole (Paris), GBFS 1.0: what `gbfs:paris` polls.
pub const PARIS_GBFS_URL: &str =
    "https://velib-metropole-opendata.smovengo.cloud/opendata/Velib_Metropole/gbfs.json";

/// One GBFS system to poll, as written after `gbfs:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GbfsTarget {
    /// A `gbfs.json` auto-discovery URL.
    Url(String),
    /// A JCDecaux contract slug such as `lyon`, expanded to
    /// `{cyclocity_base_url}/contracts/lyon/gbfs/gbfs.json`.
    JcDecauxContract(String),
    /// A system under a contract name of the user's choice, written `NAME=URL`
    /// (`paris=https://…/gbfs.json`); `gbfs:paris` is short for `paris=`[`PARIS_GBFS_URL`].
    Named {
        /// The contract name its stations are keyed by.
        contract: String,
        /// Its `gbfs.json` auto-discovery URL.
        url: String,
    },
}

fn parse_feed_url(s: &str) -> Result<String, SourceError> {
    let url = Url::parse(s).map_err(|err| SourceError::Config(format!("gbfs URL {s:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SourceError::Config(format!(
            "gbfs URL {s:?} must be http or https"
        )));
    }
    Ok(s.to_owned())
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl FromStr for GbfsTarget {
    type Err = SourceError;

    /// `NAME=URL` names a system; `http://…` or `https://…` is a URL; `paris` is Vélib'
    /// Métropole; anything else must be a JCDecaux contract slug (letters, digits, `-` and
    /// `_`), lower-cased because cyclocity slugs are.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some((name, url)) = s.split_once('=')
            && !name.contains("://")
        {
            let name = name.trim();
            if !is_slug(name) {
                return Err(SourceError::Config(format!(
                    "gbfs:{s}: the contract name {name:?} before `=` may hold only letters, \
                     digits, `-` and `_`"
                )));
            }
            return Ok(GbfsTarget::Named {
                contract: name.to_ascii_lowercase(),
                url: parse_feed_url(url.trim())?,
            });
        }
        if s.contains("://") {
            return Ok(GbfsTarget::Url(parse_feed_url(s)?));
        }
        if !is_slug(s) {
            return Err(SourceError::Config(format!(
                "{s:?} is neither a gbfs.json URL nor a JCDecaux contract slug (e.g. lyon)"
            )));
        }
        let slug = s.to_ascii_lowercase();
        if slug == "paris" {
            return Ok(GbfsTarget::Named {
                contract: slug,
                url: PARIS_GBFS_URL.to_owned(),
            });
        }
        Ok(GbfsTarget::JcDecauxContract(slug))
    }
}

impl fmt::Display for GbfsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GbfsTarget::Url(u) => f.write_str(u),
            GbfsTarget::JcDecauxContract(c) => f.write_str(c),
            GbfsTarget::Named { contract, url } => write!(f, "{contract}={url}"),
        }
    }
}

/// A target's discovery URL, and its contract name when the target gives one (a JCDecaux slug,
/// `NAME=URL`, a cyclocity URL); otherwise the name comes from the feeds on the first poll.
pub(super) fn resolve(
    target: &GbfsTarget,
    cyclocity: &Url,
) -> Result<(Url, Option<String>), SourceError> {
    Ok(match target {
        GbfsTarget::JcDecauxContract(slug) => {
            let url = cyclocity
                .join(&format!("contracts/{slug}/gbfs/gbfs.json"))
                .map_err(|err| SourceError::Config(format!("gbfs:{slug}: {err}")))?;
            (url, Some(contract_key(slug)))
        }
        GbfsTarget::Url(text) => {
            let url = Url::parse(text)
                .map_err(|err| SourceError::Config(format!("gbfs URL {text:?}: {err}")))?;
            let contract = cyclocity_slug(&url, cyclocity).map(contract_key);
            (url, contract)
        }
        GbfsTarget::Named { contract, url } => {
            let url = Url::parse(url)
                .map_err(|err| SourceError::Config(format!("gbfs URL {url:?}: {err}")))?;
            (url, Some(contract.clone()))
        }
    })
}

/// The contract slug of a JCDecaux GBFS URL (`…/contracts/<slug>/gbfs/…` on cyclocity or under
/// the configured cyclocity base), if it is one.
fn cyclocity_slug<'a>(url: &'a Url, cyclocity: &Url) -> Option<&'a str> {
    let rest = if url.host_str() == Some(CYCLOCITY_HOST) {
        url.path()
    } else if url.as_str().starts_with(cyclocity.as_str()) {
        &url.path()[cyclocity.path().len().saturating_sub(1)..]
    } else {
        return None;
    };
    let mut segments = rest.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("contracts"), Some(slug), Some("gbfs")) if !slug.is_empty() => Some(slug),
        _ => None,
    }
}

/// The host of a URL, without port: the contract name of last resort.
pub(super) fn host_name(url: &Url) -> String {
    url.host_str().unwrap_or("gbfs").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names() {
        assert_eq!(contract_key("lyon"), "lyon");
        assert_eq!(contract_key("Cergy-Pontoise"), "cergy-pontoise");
        let cyclocity = Url::parse("https://api.cyclocity.fr/").unwrap();
        let local = Url::parse("http://127.0.0.1:8080/cyc/").unwrap();
        let u = Url::parse("https://api.cyclocity.fr/contracts/lyon/gbfs/gbfs.json").unwrap();
        assert_eq!(cyclocity_slug(&u, &local), Some("lyon"));
        let u = Url::parse("http://127.0.0.1:8080/cyc/contracts/nantes/gbfs/v3/gbfs.json").unwrap();
        assert_eq!(cyclocity_slug(&u, &local), Some("nantes"));
        assert_eq!(cyclocity_slug(&u, &cyclocity), None);
        let u = Url::parse("https://gbfs.citibikenyc.com:443/gbfs/2.3/gbfs.json").unwrap();
        assert_eq!(cyclocity_slug(&u, &cyclocity), None);
        assert_eq!(host_name(&u), "gbfs.citibikenyc.com");
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            "Lyon".parse::<GbfsTarget>().unwrap(),
            GbfsTarget::JcDecauxContract("lyon".into())
        );
        assert!(matches!(
            "https://x.org/gbfs.json".parse::<GbfsTarget>().unwrap(),
            GbfsTarget::Url(_)
        ));
        assert!("ftp://x.org/gbfs.json".parse::<GbfsTarget>().is_err());
        assert_eq!(
            "paris".parse::<GbfsTarget>().unwrap(),
            GbfsTarget::Named {
                contract: "paris".into(),
                url: PARIS_GBFS_URL.into()
            }
        );
        assert_eq!(
            "Velo=http://127.0.0.1:1/gbfs.json?a=b"
                .parse::<GbfsTarget>()
                .unwrap(),
            GbfsTarget::Named {
                contract: "velo".into(),
                url: "http://127.0.0.1:1/gbfs.json?a=b".into()
            }
        );
        assert!(
            "bad name=http://x.org/gbfs.json"
                .parse::<GbfsTarget>()
                .is_err()
        );
        assert!("x=ftp://x.org/gbfs.json".parse::<GbfsTarget>().is_err());
        assert!("lyon/../x".parse::<GbfsTarget>().is_err());
        assert!("".parse::<GbfsTarget>().is_err());
    }
}
