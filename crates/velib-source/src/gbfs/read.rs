//! The GBFS documents around the stations, read through serde structs: the `gbfs.json`
//! discovery file (1.x/2.x's `data.<language>.feeds`, 3.0's flat `data.feeds`),
//! `system_information`'s `system_id`, and what every feed says of itself (`ttl`,
//! `last_updated`), with GBFS's two time formats.
//!
//! Leniency is that of [`velib_model::lenient`]: ids as strings or numbers, and what velib can
//! do without (a feed entry without a name, a `ttl` that is not a number) read as absent rather
//! than costing the document.

use crate::time::parse_rfc3339_ms;
use reqwest::Url;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use velib_model::lenient::{Id, OrNone};

/// The feeds a discovery file lists that velib reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Feeds {
    pub(super) station_information: Url,
    pub(super) station_status: Url,
    pub(super) system_information: Option<Url>,
    pub(super) vehicle_types: Option<Url>,
}

/// Reads `value` as a `T`, or says where it is not one (`data.feeds: invalid type …`).
pub(super) fn read<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        if path == "." {
            err.into_inner().to_string()
        } else {
            format!("{path}: {}", err.into_inner())
        }
    })
}

/// `gbfs.json`.
#[derive(Debug, Deserialize)]
struct Manifest {
    data: Option<ManifestData>,
}

#[derive(Debug, Deserialize)]
struct ManifestData {
    /// 3.0: the feeds themselves.
    feeds: Option<Vec<OrNone<FeedEntry>>>,
    /// 1.x/2.x: the feeds per language, in alphabetical order of the language.
    #[serde(flatten)]
    languages: BTreeMap<String, OrNone<LanguageFeeds>>,
}

#[derive(Debug, Deserialize)]
struct LanguageFeeds {
    feeds: Vec<OrNone<FeedEntry>>,
}

#[derive(Debug, Deserialize)]
struct FeedEntry {
    #[serde(default, deserialize_with = "velib_model::lenient::or_none")]
    name: Option<String>,
    #[serde(default, deserialize_with = "velib_model::lenient::or_none")]
    url: Option<String>,
}

/// Reads a discovery file: 3.0's flat `data.feeds`, or 1.x/2.x's `data.<language>.feeds`
/// (the preferred language, else `en`, else the first language in alphabetical order).
pub fn parse_discovery(value: &Value, base: &Url, language: Option<&str>) -> Result<Feeds, String> {
    let manifest: Manifest = read(value).map_err(|err| format!("gbfs.json: {err}"))?;
    let data = manifest.data.ok_or("gbfs.json has no data object")?;
    let feeds = match data.feeds {
        Some(feeds) => feeds,
        None => {
            let mut languages = data.languages;
            let chosen = language
                .filter(|l| languages.contains_key(*l))
                .map(str::to_owned)
                .or_else(|| languages.contains_key("en").then(|| "en".to_owned()))
                .or_else(|| languages.keys().next().cloned())
                .ok_or("gbfs.json lists no feeds (neither data.feeds nor data.<language>.feeds)")?;
            languages
                .remove(&chosen)
                .and_then(|l| l.0)
                .ok_or("gbfs.json: data.<language> has no feeds list")?
                .feeds
        }
    };
    let find = |name: &str| -> Result<Option<Url>, String> {
        let Some(feed) = feeds
            .iter()
            .filter_map(|f| f.0.as_ref())
            .find(|f| f.name.as_deref() == Some(name))
        else {
            return Ok(None);
        };
        let url = feed
            .url
            .as_deref()
            .ok_or_else(|| format!("gbfs.json: feed {name} has no url"))?;
        base.join(url)
            .map(Some)
            .map_err(|err| format!("gbfs.json: feed {name} url {url:?}: {err}"))
    };
    let required = |name: &str| -> Result<Url, String> {
        find(name)?.ok_or_else(|| {
            format!(
                "gbfs.json lists no {name} feed: velib reads docked stations only, and this \
                 system may be dockless (free_bike_status / vehicle_status)"
            )
        })
    };
    Ok(Feeds {
        station_information: required("station_information")?,
        station_status: required("station_status")?,
        system_information: find("system_information")?,
        vehicle_types: find("vehicle_types")?,
    })
}

/// `system_information`, of which velib reads the id only.
#[derive(Debug, Deserialize)]
struct SystemInformation {
    data: SystemData,
}

#[derive(Debug, Deserialize)]
struct SystemData {
    system_id: Id,
}

/// The `system_id` of a `system_information` feed.
pub(super) fn system_id(value: &Value) -> Result<String, String> {
    read::<SystemInformation>(value)
        .map(|s| s.data.system_id.0)
        .map_err(|err| format!("system_information has no data.system_id ({err})"))
}

/// A `station_id` (or `system_id`): a non-empty string, or a number some feeds publish
/// instead.
pub fn id_text(value: &Value) -> Option<String> {
    Id::deserialize(value).ok().map(|id| id.0)
}

/// What every GBFS feed says of itself. Each field is optional and read leniently: a header
/// velib cannot read costs the cache its `ttl` or the snapshot its time, never the feed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Header {
    #[serde(default, deserialize_with = "velib_model::lenient::or_none")]
    pub(super) ttl: Option<u64>,
    last_updated: Option<OrNone<FeedTime>>,
    /// Vélib' Métropole's 1.0 name for `last_updated`.
    #[serde(rename = "lastUpdatedOther")]
    last_updated_other: Option<OrNone<FeedTime>>,
}

impl Header {
    /// The header of `feed`; empty when the document is not an object.
    pub(super) fn of(feed: &Value) -> Header {
        Header::deserialize(feed).unwrap_or_default()
    }

    /// `last_updated` in epoch ms; `None` when absent, unreadable or a placeholder.
    pub(super) fn time(&self) -> Option<i64> {
        let time = match &self.last_updated {
            Some(t) => t.0?,
            None => self.last_updated_other.as_ref()?.0?,
        };
        time.0.filter(|&ms| ms >= PLACEHOLDER_BEFORE_MS)
    }
}

/// A feed's `last_updated` (seconds in 1.x/2.x, RFC 3339 in 3.0; Vélib' Métropole's 1.0 feed
/// calls it `lastUpdatedOther`), in epoch milliseconds; `None` when absent or unreadable.
pub fn feed_time(feed: &Value) -> Option<i64> {
    Header::of(feed).time()
}

/// Times before 2000-01-01 are placeholders, not reports: no bike-share feed predates GBFS by
/// that much.
pub(super) const PLACEHOLDER_BEFORE_MS: i64 = 946_684_800_000;

/// A GBFS time in epoch milliseconds: POSIX seconds (≤ 2.3, as a number or a numeric string)
/// or RFC 3339 (3.0); `FeedTime(None)` for `null`. Placeholders are left to the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct FeedTime(pub(super) Option<i64>);

impl<'de> Deserialize<'de> for FeedTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FeedTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp: RFC 3339 or POSIX seconds")
            }
            fn visit_unit<E: de::Error>(self) -> Result<FeedTime, E> {
                Ok(FeedTime(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<FeedTime, E> {
                Ok(FeedTime(None))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<FeedTime, D2::Error> {
                d.deserialize_any(self)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FeedTime, E> {
                Ok(FeedTime(Some(seconds_to_ms(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FeedTime, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FeedTime, E> {
                if !v.is_finite() {
                    return Err(E::invalid_value(de::Unexpected::Float(v), &self));
                }
                // Saturating: `-1e19` is `i64::MIN`, a placeholder.
                self.visit_i64(v as i64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FeedTime, E> {
                parse_rfc3339_ms(s)
                    .or_else(|| s.trim().parse::<i64>().ok().map(seconds_to_ms))
                    .map(|ms| FeedTime(Some(ms)))
                    .ok_or_else(|| E::custom(format!("{s:?} is neither RFC 3339 nor seconds")))
            }
        }
        d.deserialize_option(V)
    }
}

/// POSIX seconds to milliseconds; values too large to be seconds (after the year 5138) are
/// taken as milliseconds already, which some publishers send by mistake.
fn seconds_to_ms(value: i64) -> i64 {
    // `unsigned_abs`: `i64::MIN` (what `-1e19` saturates to) has no `abs`.
    if value.unsigned_abs() > 100_000_000_000 {
        value
    } else {
        value * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discovery_2_x_and_3_0() {
        let base = Url::parse("https://example.org/gbfs/gbfs.json").unwrap();
        let feeds = |lang: &str| {
            json!({"feeds": [
                {"name": "system_information", "url": format!("https://example.org/{lang}/system_information.json")},
                {"name": "station_information", "url": format!("https://example.org/{lang}/station_information.json")},
                {"name": "station_status", "url": "station_status.json"},
            ]})
        };
        let v2 = json!({"data": {"fr": feeds("fr"), "en": feeds("en")}});
        let got = parse_discovery(&v2, &base, None).unwrap();
        assert_eq!(
            got.station_information.as_str(),
            "https://example.org/en/station_information.json"
        );
        assert_eq!(
            got.station_status.as_str(),
            "https://example.org/gbfs/station_status.json"
        );
        let got = parse_discovery(&v2, &base, Some("fr")).unwrap();
        assert_eq!(
            got.station_information.as_str(),
            "https://example.org/fr/station_information.json"
        );
        let only_de = json!({"data": {"de": feeds("de")}});
        assert!(
            parse_discovery(&only_de, &base, Some("fr"))
                .unwrap()
                .station_information
                .as_str()
                .contains("/de/")
        );

        let v3 = json!({"version": "3.0", "data": feeds("xx")});
        let got = parse_discovery(&v3, &base, Some("fr")).unwrap();
        assert!(got.system_information.unwrap().as_str().contains("/xx/"));

        let dockless = json!({"data": {"feeds": [{"name": "vehicle_status", "url": "v.json"}]}});
        assert!(
            parse_discovery(&dockless, &base, None)
                .unwrap_err()
                .contains("dockless")
        );
        assert!(parse_discovery(&json!({"data": {}}), &base, None).is_err());
        assert!(parse_discovery(&json!([]), &base, None).is_err());
    }

    #[test]
    fn discovery_leniency() {
        let base = Url::parse("https://example.org/gbfs.json").unwrap();
        // An entry that is not a feed, a feed without a name, a language without feeds that
        // is not the chosen one: none of them costs the file.
        let v2 = json!({"data": {"de": 5, "en": {"feeds": [
            7, {"url": "x.json"},
            {"name": "station_information", "url": "i.json"},
            {"name": "station_status", "url": "s.json"}]}}});
        let got = parse_discovery(&v2, &base, Some("de")).unwrap_err();
        assert!(got.contains("no feeds list"), "{got}");
        let got = parse_discovery(&v2, &base, None).unwrap();
        assert_eq!(got.station_status.as_str(), "https://example.org/s.json");
        let no_url = json!({"data": {"feeds": [{"name": "station_information"}]}});
        let err = parse_discovery(&no_url, &base, None).unwrap_err();
        assert!(err.contains("has no url"), "{err}");
        let not_a_list = json!({"data": {"feeds": {"name": "station_status"}}});
        let err = parse_discovery(&not_a_list, &base, None).unwrap_err();
        assert!(err.contains("data.feeds"), "{err}");
    }

    #[test]
    fn system_ids_and_headers() {
        assert_eq!(
            system_id(&json!({"data": {"system_id": " lyon "}})),
            Ok("lyon".to_owned())
        );
        assert_eq!(
            system_id(&json!({"data": {"system_id": 7}})),
            Ok("7".to_owned())
        );
        assert!(system_id(&json!({"data": {"system_id": ""}})).is_err());
        assert!(system_id(&json!({"data": {}})).is_err());
        assert_eq!(Header::of(&json!({"ttl": 60})).ttl, Some(60));
        assert_eq!(Header::of(&json!({"ttl": "60"})).ttl, None);
        assert_eq!(Header::of(&json!({"ttl": -1})).ttl, None);
        assert_eq!(Header::of(&json!([1])).ttl, None);
        assert_eq!(feed_time(&json!({"last_updated": true})), None);
    }
}
