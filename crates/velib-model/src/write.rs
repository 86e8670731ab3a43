//! A hand-written writer of a station's v1 JSON: what the producer publishes for every station
//! of every poll. It writes byte for byte what serde_json writes for [`Station`]'s `Serialize`
//! (the same members in the same order, the optional ones only when set, the same escapes and
//! number forms): the agreement test in `tests.rs` compares the two on every station of the
//! real day and on text that needs escaping. It exists for speed: serde_json escapes every key
//! and copies each piece with a call of its own, most of the producer's own work per record.

use crate::scan::plain_len;
use crate::station::{Position, Station, StationId, Status};
use crate::vehicles::{VehicleCount, VehicleKind};

impl Station {
    /// Appends this station's v1 JSON to `out`: the same bytes as [`Station::to_json`]
    /// returns, without a new buffer per station.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"number\":");
        match &self.number {
            StationId::Number(n) => integer(out, *n),
            StationId::Text(t) => string(out, t),
        }
        out.extend_from_slice(b",\"contract_name\":");
        string(out, &self.contract_name);
        out.extend_from_slice(b",\"name\":");
        string(out, &self.name);
        out.extend_from_slice(b",\"address\":");
        string(out, &self.address);
        out.extend_from_slice(b",\"position\":");
        position(out, self.position);
        out.extend_from_slice(b",\"banking\":");
        boolean(out, self.banking);
        out.extend_from_slice(b",\"bonus\":");
        boolean(out, self.bonus);
        out.extend_from_slice(b",\"bike_stands\":");
        integer(out, self.bike_stands);
        out.extend_from_slice(b",\"available_bike_stands\":");
        integer(out, self.available_bike_stands);
        out.extend_from_slice(b",\"available_bikes\":");
        integer(out, self.available_bikes);
        out.extend_from_slice(match self.status {
            Status::Open => b",\"status\":\"OPEN\"",
            Status::Closed => b",\"status\":\"CLOSED\"",
        });
        out.extend_from_slice(b",\"last_update\":");
        match self.last_update {
            Some(ms) => integer(out, ms),
            None => out.extend_from_slice(b"null"),
        }
        // The optional members, only when set (`skip_serializing_if`).
        if let Some(ms) = self.snapshot_at {
            out.extend_from_slice(b",\"snapshot_at\":");
            integer(out, ms);
        }
        if let Some(counts) = &self.bikes_by_type {
            out.extend_from_slice(b",\"bikes_by_type\":[");
            for (i, count) in counts.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                vehicle_count(out, count);
            }
            out.push(b']');
        }
        if let Some(n) = self.bikes_out_of_service {
            out.extend_from_slice(b",\"bikes_out_of_service\":");
            integer(out, n);
        }
        if let Some(n) = self.docks_out_of_service {
            out.extend_from_slice(b",\"docks_out_of_service\":");
            integer(out, n);
        }
        if let Some(returning) = self.is_returning {
            out.extend_from_slice(b",\"is_returning\":");
            boolean(out, returning);
        }
        out.push(b'}');
    }
}

fn vehicle_count(out: &mut Vec<u8>, count: &VehicleCount<'_>) {
    out.extend_from_slice(b"{\"vehicle_type_id\":");
    string(out, &count.vehicle_type_id);
    out.extend_from_slice(match count.kind {
        VehicleKind::Classic => b",\"kind\":\"classic\",\"count\":",
        VehicleKind::Electric => b",\"kind\":\"electric\",\"count\":",
        VehicleKind::Other => b",\"kind\":\"other\",\"count\":",
    });
    integer(out, count.count);
    out.push(b'}');
}

fn position(out: &mut Vec<u8>, position: Position) {
    out.extend_from_slice(b"{\"lat\":");
    float(out, position.lat);
    out.extend_from_slice(b",\"lng\":");
    float(out, position.lng);
    out.push(b'}');
}

/// A string, quoted; one with a byte to escape (a quote, a backslash, a control character) is
/// left to serde_json, whose escapes these are.
fn string(out: &mut Vec<u8>, text: &str) {
    if plain_len(text.as_bytes()).is_none() {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("a string always serialises");
    }
}

fn integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A float as serde_json writes it (the shortest form that reads back to the same value; a
/// non-finite one as `null`, which no station read has).
fn float(out: &mut Vec<u8>, value: f64) {
    serde_json::to_writer(&mut *out, &value).expect("a float always serialises");
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}
