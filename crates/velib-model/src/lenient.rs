//! Deserialisers for what real station feeds write: a number as a JSON string (`"12"`), an id
//! as a string or a number, a flag as `0`/`1`, while still rejecting what is not a number, an
//! id or a flag. Used by the station schema and by the GBFS readers of `velib-source`, with
//! `#[serde(deserialize_with = "…")]`.
//!
//! [`OrNone`] and the `*_or_none` readers are for fields a record can do without: what cannot
//! be read is `None`, and the record is still read.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A non-negative count (`bike_stands`, `available_bikes`, …) given as a number or a numeric
/// string.
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer count")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format!("count {v} is out of range")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v)
                .map_err(|_| E::custom(format!("count {v} is negative or out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
            // Some feeds write `3.0`; anything with a fraction is not a count.
            if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                Ok(v as u32)
            } else {
                Err(E::custom(format!(
                    "count {v} is not a non-negative integer"
                )))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// A coordinate given as a number or a numeric string.
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// An optional epoch-milliseconds timestamp: a number, a numeric string, or `null`.
pub fn opt_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("epoch milliseconds or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("timestamp {v} is out of range")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v.fract() == 0.0 {
                Ok(Some(v as i64))
            } else {
                Err(E::custom(format!(
                    "timestamp {v} is not whole milliseconds"
                )))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_option(V)
}

/// A boolean, or the strings `"true"`/`"false"`; a missing field is `false` (see the callers'
/// `#[serde(default)]`).
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v {
                "true" | "TRUE" | "True" => Ok(true),
                "false" | "FALSE" | "False" => Ok(false),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// An optional count: what [`count`] accepts, or `null` for "the feed does not say".
pub fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer count or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            count(d).map(Some)
        }
    }
    d.deserialize_option(V)
}

/// An optional boolean: what [`boolean`] accepts, except that `null` means "the feed does not
/// say" rather than `false`.
pub fn opt_boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            boolean(d).map(Some)
        }
    }
    d.deserialize_option(V)
}

/// A flag: a boolean, or `0`/`1` as GBFS 1.0 wrote them; `null` for "the feed does not say".
pub fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
        Some(other) => Err(de::Error::custom(format!(
            "{other} is not a boolean (or 0/1)"
        ))),
    }
}

/// A count that may be written below 0, read as 0: what [`count`] accepts, and 0 for a negative
/// integer. (JCDecaux's GBFS feeds give a type's count as the total minus the other types,
/// which goes below 0 when the other types overshoot.)
pub fn clamped_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let value = Value::deserialize(d)?;
    match value.as_i64() {
        Some(n) if n < 0 => Ok(0),
        _ => count(&value).map_err(de::Error::custom),
    }
}

/// An identifier (a GBFS `station_id`, `system_id`, `vehicle_type_id`): a non-empty string,
/// trimmed, or a number, which some feeds publish instead, in its JSON spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
                // As serde_json writes the number, so an id reads the same from any reader.
                serde_json::Number::from_f64(v)
                    .map(|n| Id(n.to_string()))
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                let v = v.trim();
                if v.is_empty() {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                } else {
                    Ok(Id(v.to_owned()))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A value that is `None` when it is not a readable `T`: for fields a record can do without,
/// so that one the feed garbles costs that field, not the record. (The field is read into a
/// [`Value`] first, which is how serde can go on after a failure inside it.)
#[derive(Debug, Clone, PartialEq)]
pub struct OrNone<T>(pub Option<T>);

impl<T> Default for OrNone<T> {
    fn default() -> Self {
        OrNone(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OrNone<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(OrNone(T::deserialize(value).ok()))
    }
}

/// [`OrNone`] as a `deserialize_with` function: `None` when absent (with `#[serde(default)]`),
/// `null`, or not a readable `T`.
pub fn or_none<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    OrNone::<T>::deserialize(d).map(|o| o.0)
}

/// [`opt_count`], or `None` when the value is not a count.
pub fn count_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(opt_count(&value).ok().flatten())
}

/// [`opt_flag`], or `None` when the value is not a flag.
pub fn flag_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(opt_flag(&value).ok().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_flags_and_clamped_counts() {
        let id = |v: Value| Id::deserialize(&v).ok().map(|i| i.0);
        assert_eq!(id(json!(" 1001 ")), Some("1001".to_owned()));
        assert_eq!(id(json!(42)), Some("42".to_owned()));
        assert_eq!(id(json!(-7)), Some("-7".to_owned()));
        assert_eq!(id(json!(1.5)), Some("1.5".to_owned()));
        for bad in [json!(""), json!(" "), json!(null), json!(true), json!([1])] {
            assert_eq!(id(bad.clone()), None, "{bad}");
        }

        let flag = |v: Value| opt_flag(&v).map_err(|e| e.to_string());
        assert_eq!(flag(json!(true)), Ok(Some(true)));
        assert_eq!(flag(json!(0)), Ok(Some(false)));
        assert_eq!(flag(json!(1)), Ok(Some(true)));
        assert_eq!(flag(json!(null)), Ok(None));
        for bad in [json!(2), json!(-1), json!(1.0), json!("yes")] {
            assert!(flag(bad.clone()).is_err(), "{bad}");
        }

        let clamped = |v: Value| clamped_count(&v).ok();
        assert_eq!(clamped(json!(-2)), Some(0));
        assert_eq!(clamped(json!("12")), Some(12));
        assert_eq!(clamped(json!(1.5)), None);
        assert_eq!(clamped(json!("-2")), None);
    }

    #[test]
    fn or_none_keeps_the_record_and_drops_the_field() {
        #[derive(Deserialize)]
        struct Record {
            #[serde(deserialize_with = "count")]
            bikes: u32,
            #[serde(default, deserialize_with = "count_or_none")]
            disabled: Option<u32>,
            #[serde(default, deserialize_with = "flag_or_none")]
            returning: Option<bool>,
            #[serde(default)]
            name: OrNone<String>,
        }
        let r: Record = serde_json::from_value(
            json!({"bikes": "3", "disabled": -1, "returning": "perhaps", "name": 5}),
        )
        .unwrap();
        assert_eq!(
            (r.bikes, r.disabled, r.returning, r.name),
            (3, None, None, OrNone(None))
        );
        let r: Record = serde_json::from_value(
            json!({"bikes": 3, "disabled": "2", "returning": 1, "name": "Bellecour"}),
        )
        .unwrap();
        assert_eq!(
            (r.disabled, r.returning, r.name),
            (Some(2), Some(true), OrNone(Some("Bellecour".to_owned())))
        );
    }
}
