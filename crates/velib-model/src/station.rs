use crate::vehicles::{self, VehicleCount, VehicleKind};
use crate::{StationKey, lenient};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// One bike-share station as the JCDecaux v1 API describes it.
///
/// Serialising gives the v1 JSON back (same field names, `status` as `"OPEN"`/`"CLOSED"`,
/// `last_update` in epoch milliseconds or `null`). Deserialising ignores unknown fields, accepts
/// numbers written as strings, and reports a wrong type or a missing required field with the
/// field's name and, when it can be read, the station's key (see [`Station::from_json`]).
///
/// Required: `number`, `contract_name`, `status`, `bike_stands`, `available_bike_stands`,
/// `available_bikes`. The descriptive fields (`name`, `address`, `banking`, `bonus`) default to
/// empty/false when absent, because a station without a street address is still worth
/// watching; `position` is required because alerts locate stations by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    /// The station's id within its contract. JCDecaux numbers repeat between contracts, so use
    /// [`Station::key`] to identify a station.
    pub number: StationId,
    /// The bike-share system ("contract" in JCDecaux's words), e.g. `Lyon`.
    pub contract_name: String,
    /// Display name, e.g. `9087-MAZARGUES`.
    #[serde(default)]
    pub name: String,
    /// Street address, the text the monitor prints.
    #[serde(default)]
    pub address: String,
    /// WGS 84 position.
    pub position: Position,
    /// Whether the station has a payment terminal.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub banking: bool,
    /// Whether the station is a "bonus" station (JCDecaux only).
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub bonus: bool,
    /// Total number of stands.
    #[serde(deserialize_with = "lenient::count")]
    pub bike_stands: u32,
    /// Free stands, where a bike can be returned.
    #[serde(deserialize_with = "lenient::count")]
    pub available_bike_stands: u32,
    /// Bikes ready to be rented.
    #[serde(deserialize_with = "lenient::count")]
    pub available_bikes: u32,
    /// Whether the station is in service.
    pub status: Status,
    /// When the station last reported, in epoch milliseconds; `null` when the feed does not say.
    ///
    /// Informative only: real feeds move it like a heartbeat, not with the counts (see
    /// [`Station::snapshot_at`]), so the monitor does not order records by it.
    #[serde(default, deserialize_with = "lenient::opt_millis")]
    pub last_update: Option<i64>,
    /// When the snapshot this record belongs to was taken, in epoch milliseconds: what orders
    /// the records of one station. Not a v1 field: velib's producer adds it, and it is left out
    /// of the JSON when absent, so a record without it is exactly v1's.
    ///
    /// - GBFS: the `station_status` feed's `last_updated`, which advances with every new
    ///   snapshot the publisher makes and stays put when the same snapshot is served again;
    /// - JCDecaux v1, simulation: the poll time (a poll is itself a newer snapshot);
    /// - replay: what the recording holds.
    ///
    /// A station's `last_update` (GBFS `last_reported`) cannot play this part: in JCDecaux's
    /// GBFS feeds it stays the same through 98 % of count changes and sometimes goes back in
    /// time while the counts move.
    #[serde(
        default,
        deserialize_with = "lenient::opt_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_at: Option<i64>,
    /// Available bikes per vehicle type (e-bikes, classic bikes), when the feed counts them
    /// by type. Not a v1 field, like everything below: each is left out of the JSON when the
    /// source does not say, so "not known" is never written as 0.
    ///
    /// GBFS lists the types a station holds: a type missing from a present list has no bike
    /// there. The counts need not add up to `available_bikes` (a feed may leave a type out).
    #[serde(
        default,
        deserialize_with = "vehicles::owned_counts",
        skip_serializing_if = "Option::is_none"
    )]
    pub bikes_by_type: Option<Vec<VehicleCount<'static>>>,
    /// Bikes docked but out of service (GBFS `num_bikes_disabled`, 3.0 `num_vehicles_disabled`).
    #[serde(
        default,
        deserialize_with = "lenient::opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub bikes_out_of_service: Option<u32>,
    /// Docks out of service, where no bike can be returned (GBFS `num_docks_disabled`).
    #[serde(
        default,
        deserialize_with = "lenient::opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub docks_out_of_service: Option<u32>,
    /// Whether the station takes bikes back (GBFS `is_returning`). An OPEN station may not:
    /// `status` follows renting, as v1's did.
    #[serde(
        default,
        deserialize_with = "lenient::opt_boolean",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_returning: Option<bool>,
}

/// A [`Station`] read without copying its text: the strings borrow from the JSON bytes
/// (unless they contain escapes), so reading one costs no allocation for the usual record.
///
/// It accepts and rejects exactly what [`Station::from_json`] does: every field is read with the
/// same rules (required fields, lenient numbers, position) and only the storage differs. The
/// monitor reads every record this way and makes an owned [`Station`] only when it publishes an
/// event.
///
/// ```
/// use velib_model::{Station, StationView};
///
/// let json = br#"{"number": 9087, "contract_name": "Marseille", "address": "MAZARGUES",
///     "position": {"lat": 43.25, "lng": 5.40}, "status": "OPEN", "bike_stands": 21,
///     "available_bike_stands": 20, "available_bikes": 1, "last_update": 1493734764000}"#;
/// let view = StationView::from_json(json)?;
/// assert_eq!(view.contract_name, "Marseille");
/// assert_eq!(view.to_station(), Station::from_json(json)?);
/// # Ok::<(), velib_model::StationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StationView<'a> {
    /// See [`Station::number`].
    pub number: StationId,
    /// See [`Station::contract_name`].
    #[serde(borrow)]
    pub contract_name: Cow<'a, str>,
    /// See [`Station::name`].
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    /// See [`Station::address`].
    #[serde(default, borrow)]
    pub address: Cow<'a, str>,
    /// See [`Station::position`].
    pub position: Position,
    /// See [`Station::banking`].
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub banking: bool,
    /// See [`Station::bonus`].
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub bonus: bool,
    /// See [`Station::bike_stands`].
    #[serde(deserialize_with = "lenient::count")]
    pub bike_stands: u32,
    /// See [`Station::available_bike_stands`].
    #[serde(deserialize_with = "lenient::count")]
    pub available_bike_stands: u32,
    /// See [`Station::available_bikes`].
    #[serde(deserialize_with = "lenient::count")]
    pub available_bikes: u32,
    /// See [`Station::status`].
    pub status: Status,
    /// See [`Station::last_update`].
    #[serde(default, deserialize_with = "lenient::opt_millis")]
    pub last_update: Option<i64>,
    /// See [`Station::snapshot_at`].
    #[serde(default, deserialize_with = "lenient::opt_millis")]
    pub snapshot_at: Option<i64>,
    /// See [`Station::bikes_by_type`].
    #[serde(default, borrow)]
    pub bikes_by_type: Option<Vec<VehicleCount<'a>>>,
    /// See [`Station::bikes_out_of_service`].
    #[serde(default, deserialize_with = "lenient::opt_count")]
    pub bikes_out_of_service: Option<u32>,
    /// See [`Station::docks_out_of_service`].
    #[serde(default, deserialize_with = "lenient::opt_count")]
    pub docks_out_of_service: Option<u32>,
    /// See [`Station::is_returning`].
    #[serde(default, deserialize_with = "lenient::opt_boolean")]
    pub is_returning: Option<bool>,
}

impl<'a> StationView<'a> {
    /// The station's identity across systems: contract plus id.
    pub fn key(&self) -> StationKey {
        StationKey::new(&self.contract_name, &self.number.to_string())
    }

    /// Whether the station is open with no bike to rent.
    pub fn is_empty(&self) -> bool {
        self.status == Status::Open && self.available_bikes == 0
    }

    /// The owned [`Station`], copying the text.
    pub fn to_station(&self) -> Station {
        Station {
            number: self.number.clone(),
            contract_name: self.contract_name.as_ref().to_owned(),
            name: self.name.as_ref().to_owned(),
            address: self.address.as_ref().to_owned(),
            position: self.position,
            banking: self.banking,
            bonus: self.bonus,
            bike_stands: self.bike_stands,
            available_bike_stands: self.available_bike_stands,
            available_bikes: self.available_bikes,
            status: self.status,
            last_update: self.last_update,
            snapshot_at: self.snapshot_at,
            bikes_by_type: self
                .bikes_by_type
                .as_ref()
                .map(|counts| counts.iter().map(|c| c.borrowed().into_owned()).collect()),
            bikes_out_of_service: self.bikes_out_of_service,
            docks_out_of_service: self.docks_out_of_service,
            is_returning: self.is_returning,
        }
    }

    /// Available e-bikes, when the record counts bikes by type (see [`Station::ebikes`]).
    pub fn ebikes(&self) -> Option<u32> {
        vehicles::of_kind(self.bikes_by_type.as_deref(), VehicleKind::Electric)
    }

    /// Available classic bikes, when the record counts bikes by type.
    pub fn classic_bikes(&self) -> Option<u32> {
        vehicles::of_kind(self.bikes_by_type.as_deref(), VehicleKind::Classic)
    }
}

/// A WGS 84 position in decimal degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Latitude.
    #[serde(deserialize_with = "lenient::float")]
    pub lat: f64,
    /// Longitude.
    #[serde(deserialize_with = "lenient::float")]
    pub lng: f64,
}

impl Position {
    /// The great-circle distance to `other`, in metres (haversine formula).
    ///
    /// ```
    /// use velib_model::Position;
    ///
    /// let bellecour = Position { lat: 45.7578, lng: 4.8320 };
    /// let d = bellecour.distance_m(Position { lat: 45.7673, lng: 4.8357 });
    /// assert!((1_000.0..1_150.0).contains(&d), "{d}");
    /// assert!(Position { lat: 45.76, lng: 4.83 }.is_real());
    /// assert!(!Position { lat: 0.0, lng: 0.0 }.is_real());
    /// ```
    pub fn distance_m(self, other: Position) -> f64 {
        const EARTH_RADIUS_M: f64 = 6_371_008.8; // mean Earth radius (IUGG)
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (other.lng - self.lng).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
    }

    /// Whether this is a place on Earth rather than a placeholder: finite, within ±90/±180,
    /// and not 0,0 (where real feeds put workshop and test stations).
    pub fn is_real(self) -> bool {
        self.lat.is_finite()
            && self.lng.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lng)
            && !(self.lat == 0.0 && self.lng == 0.0)
    }
}

/// Whether a station is in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Status {
    /// Renting and accepting returns.
    #[serde(rename = "OPEN")]
    Open,
    /// Out of service.
    #[serde(rename = "CLOSED")]
    Closed,
}

impl Status {
    /// The v1 spelling, `OPEN` or `CLOSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::Closed => "CLOSED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // The v1 API writes upper case; be forgiving about case, strict about the value.
        if s.eq_ignore_ascii_case("OPEN") {
            Ok(Status::Open)
        } else if s.eq_ignore_ascii_case("CLOSED") {
            Ok(Status::Closed)
        } else {
            Err(serde::de::Error::unknown_variant(&s, &["OPEN", "CLOSED"]))
        }
    }
}

/// A station's id within its system.
///
/// JCDecaux numbers are integers; GBFS `station_id`s are strings that are often, but not always,
/// numeric. A numeric string without leading zeros becomes a [`StationId::Number`], so the same
/// station gets the same id whichever feed described it; anything else stays text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StationId {
    /// A numeric id, serialised as a JSON number.
    Number(u64),
    /// Any other id, serialised as a JSON string.
    Text(String),
}

impl StationId {
    /// Parses an id given as text, turning canonical decimal numbers into [`StationId::Number`].
    pub fn from_text(s: &str) -> StationId {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        match canonical.then(|| s.parse::<u64>().ok()).flatten() {
            Some(n) => StationId::Number(n),
            None => StationId::Text(s.to_owned()),
        }
    }
}

impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StationId::Number(n) => write!(f, "{n}"),
            StationId::Text(s) => f.write_str(s),
        }
    }
}

impl From<u64> for StationId {
    fn from(n: u64) -> Self {
        StationId::Number(n)
    }
}

impl Serialize for StationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StationId::Number(n) => s.serialize_u64(*n),
            StationId::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for StationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StationId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a station number or id string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StationId, E> {
                Ok(StationId::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StationId, E> {
                u64::try_from(v)
                    .map(StationId::Number)
                    .map_err(|_| E::custom(format!("station number {v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StationId, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("station id is empty"));
                }
                Ok(StationId::from_text(v.trim()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A station record that could not be read.
///
/// The message names the offending field and, when the record still says which station it is,
/// the station's key, so a log line points at the exact record to look at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid station record{}{}: {reason}",
    .station.as_ref().map(|s| format!(" for station {s}")).unwrap_or_default(),
    .field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
pub struct StationError {
    /// The key of the station, when the record's `contract_name` and `number` could be read.
    pub station: Option<String>,
    /// The JSON path of the field at fault (`available_bikes`, `position.lat`), when known.
    pub field: Option<String>,
    /// What is wrong, in serde's words.
    pub reason: String,
}

impl Station {
    /// The station's identity across systems: contract plus id.
    pub fn key(&self) -> StationKey {
        StationKey::new(&self.contract_name, &self.number.to_string())
    }

    /// Writes the text of [`Station::key`] into `out` (cleared first), without allocating.
    pub fn write_key(&self, out: &mut String) {
        StationKey::write_text(&self.contract_name, &self.number, out);
    }

    /// Reads one v1 station record from JSON bytes.
    ///
    /// # Errors
    ///
    /// A [`StationError`] naming the field and, when readable, the station.
    pub fn from_json(bytes: &[u8]) -> Result<Station, StationError> {
        // Fast path: almost every record is valid, and tracking the JSON path of each field
        // costs a good part of the parse. Only a record that fails is read again, slowly, to
        // say which field is at fault.
        if let Ok(station) = serde_json::from_slice::<Station>(bytes) {
            return Ok(station);
        }
        let whole = || serde_json::from_slice::<serde_json::Value>(bytes).ok();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let station = serde_path_to_error::deserialize::<_, Station>(&mut de)
            .map_err(|err| StationError::from_path_error(err, whole))?;
        // A record followed by anything but whitespace is not one record.
        de.end().map_err(|err| StationError {
            station: Some(station.key().to_string()),
            field: None,
            reason: err.to_string(),
        })?;
        Ok(station)
    }

    /// Reads one v1 station record from an already-parsed JSON value, as found in the array
    /// the v1 API returns.
    ///
    /// # Errors
    ///
    /// A [`StationError`] naming the field and, when readable, the station.
    pub fn from_value(value: &serde_json::Value) -> Result<Station, StationError> {
        serde_path_to_error::deserialize::<_, Station>(value)
            .map_err(|err| StationError::from_path_error(err, || Some(value.clone())))
    }

    /// The v1 JSON of this station.
    ///
    /// The same bytes as serde_json writes for its `Serialize`, written by hand, faster (see
    /// [`Station::write_json`]).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    /// Whether the station is open with no bike to rent.
    pub fn is_empty(&self) -> bool {
        self.status == Status::Open && self.available_bikes == 0
    }

    /// A [`StationView`] borrowing this station's text.
    pub fn view(&self) -> StationView<'_> {
        StationView {
            number: self.number.clone(),
            contract_name: Cow::Borrowed(&self.contract_name),
            name: Cow::Borrowed(&self.name),
            address: Cow::Borrowed(&self.address),
            position: self.position,
            banking: self.banking,
            bonus: self.bonus,
            bike_stands: self.bike_stands,
            available_bike_stands: self.available_bike_stands,
            available_bikes: self.available_bikes,
            status: self.status,
            last_update: self.last_update,
            snapshot_at: self.snapshot_at,
            bikes_by_type: self
                .bikes_by_type
                .as_ref()
                .map(|counts| counts.iter().map(VehicleCount::borrowed).collect()),
            bikes_out_of_service: self.bikes_out_of_service,
            docks_out_of_service: self.docks_out_of_service,
            is_returning: self.is_returning,
        }
    }

    /// Available e-bikes, when the record counts bikes by type: the sum of the counts of
    /// electric types, 0 when the list has none.
    ///
    /// ```
    /// use velib_model::Station;
    ///
    /// let json = br#"{"number": 1, "contract_name": "lyon", "position": {"lat": 45.7, "lng": 4.8},
    ///     "status": "OPEN", "bike_stands": 20, "available_bike_stands": 12, "available_bikes": 8,
    ///     "bikes_by_type": [{"vehicle_type_id": "electrical", "kind": "electric", "count": 5},
    ///                       {"vehicle_type_id": "mechanical", "kind": "classic", "count": 3}]}"#;
    /// let station = Station::from_json(json)?;
    /// assert_eq!((station.ebikes(), station.classic_bikes()), (Some(5), Some(3)));
    /// assert_eq!(station.docks_out_of_service, None, "not said, so not known");
    /// # Ok::<(), velib_model::StationError>(())
    /// ```
    pub fn ebikes(&self) -> Option<u32> {
        vehicles::of_kind(self.bikes_by_type.as_deref(), VehicleKind::Electric)
    }

    /// Available classic bikes, when the record counts bikes by type.
    pub fn classic_bikes(&self) -> Option<u32> {
        vehicles::of_kind(self.bikes_by_type.as_deref(), VehicleKind::Classic)
    }
}

impl StationError {
    fn from_path_error(
        err: serde_path_to_error::Error<serde_json::Error>,
        whole: impl FnOnce() -> Option<serde_json::Value>,
    ) -> StationError {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let reason = inner.to_string();
        let field = if path != "." && !path.is_empty() {
            Some(path)
        } else {
            // serde reports a missing field at the enclosing struct: pull the name out of
            // "missing field `status`" so the caller still learns which field it is.
            reason
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_owned)
        };
        let station = whole().and_then(|v| {
            let contract = v.get("contract_name")?.as_str()?.to_owned();
            let id = match v.get("number")? {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s.clone(),
                _ => return None,
            };
            Some(StationKey::new(&contract, &id).to_string())
        });
        StationError {
            station,
            field,
            reason,
        }
    }
}
