use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The identity of a station across bike-share systems: `contract:id`, e.g. `lyon:1001`.
///
/// It is the Kafka message key of every station record and the monitor's state key.
///
/// # Why not the number alone
///
/// The tutorial keys records by `str(station["number"])`. JCDecaux numbers are only unique
/// within a contract: station 1001 exists in several cities, so a number-only key sends them to
/// the same partition (harmless) but also makes them one station in the monitor's state
/// (wrong: Lyon's 1001 and Toulouse's 1001 would overwrite each other and print false changes).
/// The tutorial's own monitor already works around this with a dict per contract; putting the
/// contract into the key makes the identity explicit and works for GBFS systems, whose
/// `station_id`s need not be numbers.
///
/// The contract comes first and may not contain `:`; the id is everything after the first
/// `:` and may contain more of them (some GBFS ids do).
///
/// ```
/// use velib_model::StationKey;
///
/// let key: StationKey = "Lyon:1001".parse()?;
/// assert_eq!(key.contract(), "Lyon");
/// assert_eq!(key.id(), "1001");
/// assert_eq!(key.as_str(), "Lyon:1001");
/// # Ok::<(), velib_model::StationKeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StationKey {
    // One allocation holding `contract:id`; `split` is the index of the separator.
    text: Box<str>,
    split: usize,
}

/// A string that is not a valid `contract:id` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid station key {input:?}: expected CONTRACT:ID, for example Lyon:1001")]
pub struct StationKeyError {
    /// The text that was rejected.
    pub input: String,
}

impl StationKey {
    /// Builds a key from a contract name and a station id. A `:` in the contract name is
    /// replaced by `_`, so the key always splits back into the same two parts.
    pub fn new(contract: &str, id: &str) -> StationKey {
        let contract = if contract.contains(':') {
            std::borrow::Cow::Owned(contract.replace(':', "_"))
        } else {
            std::borrow::Cow::Borrowed(contract)
        };
        let mut text = String::with_capacity(contract.len() + 1 + id.len());
        text.push_str(&contract);
        text.push(':');
        text.push_str(id);
        StationKey {
            split: contract.len(),
            text: text.into_boxed_str(),
        }
    }

    /// Writes the text of `StationKey::new(contract, id)` into `out` (cleared first), for loops
    /// that only need the key's bytes and can reuse one buffer.
    ///
    /// ```
    /// use velib_model::StationKey;
    ///
    /// let mut text = String::new();
    /// StationKey::write_text("a:b", 12, &mut text);
    /// assert_eq!(text, StationKey::new("a:b", "12").as_str());
    /// ```
    pub fn write_text(contract: &str, id: impl fmt::Display, out: &mut String) {
        use fmt::Write;
        out.clear();
        if contract.contains(':') {
            out.extend(contract.chars().map(|c| if c == ':' { '_' } else { c }));
        } else {
            out.push_str(contract);
        }
        out.push(':');
        let _ = write!(out, "{id}");
    }

    /// The contract (system) part.
    pub fn contract(&self) -> &str {
        &self.text[..self.split]
    }

    /// The station id part.
    pub fn id(&self) -> &str {
        &self.text[self.split + 1..]
    }

    /// The whole key, `contract:id`: the bytes used as the Kafka message key.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for StationKey {
    type Err = StationKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((contract, id)) if !contract.is_empty() && !id.is_empty() => {
                Ok(StationKey::new(contract, id))
            }
            _ => Err(StationKeyError {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for StationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for StationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StationKey({:?})", &*self.text)
    }
}

impl Serialize for StationKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for StationKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
