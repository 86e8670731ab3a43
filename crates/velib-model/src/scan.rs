//! A hand-written reader for the usual shape of a v1 station record, the one velib's producer
//! and the JCDecaux API write: one flat object with the twelve v1 fields (and velib's own
//! optional ones), numbers as numbers, strings without escapes.
//!
//! It is a fast path, not a second parser: it accepts a record only when every byte of it has
//! been checked to be JSON that [`StationView`]'s serde reading would accept, giving the same
//! values; anything else (an unknown or repeated field, an escape in a string, a number written
//! as a string or with a fraction where a count is expected, …) returns `None`, and the caller
//! reads the record with serde, which decides (the caller is [`StationView::from_json`], here
//! too). So the result is always the serde result; the differential test in `tests.rs` checks it
//! on mutated records.

use crate::station::{Position, Station, StationError, StationId, StationView, Status};
use crate::vehicles::{VehicleCount, VehicleKind};
use std::borrow::Cow;

impl<'a> StationView<'a> {
    /// Reads one v1 station record from JSON bytes, borrowing its text from them.
    ///
    /// # Errors
    ///
    /// The same [`StationError`] as [`Station::from_json`] gives for these bytes.
    pub fn from_json(bytes: &'a [u8]) -> Result<StationView<'a>, StationError> {
        // Fast path: the usual record, read by hand (below); anything unusual is left to
        // serde, which decides.
        if let Some(view) = station(bytes) {
            return Ok(view);
        }
        match serde_json::from_slice::<StationView<'a>>(bytes) {
            Ok(view) => Ok(view),
            // The slow path explains the failure; both read the same fields the same way, so
            // it fails too. Should it not, the fast path's own error is still an error.
            Err(fast) => Err(Station::from_json(bytes).err().unwrap_or(StationError {
                station: None,
                field: None,
                reason: fast.to_string(),
            })),
        }
    }
}

/// The record, if it has the usual shape and is valid; `None` when serde must decide.
pub(crate) fn station(bytes: &[u8]) -> Option<StationView<'_>> {
    // Only the three text fields are checked to be UTF-8: keys and `status` are compared with
    // ASCII names, and outside strings only ASCII JSON tokens are accepted.
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner {
        text,
        b: bytes,
        i: 0,
    };
    let mut number = None;
    let mut contract_name = None;
    let mut name = None;
    let mut address = None;
    let mut position = None;
    let mut banking = None;
    let mut bonus = None;
    let mut bike_stands = None;
    let mut available_bike_stands = None;
    let mut available_bikes = None;
    let mut status = None;
    let mut last_update = None;
    let mut snapshot_at = None;
    let mut bikes_by_type = None;
    let mut bikes_out_of_service = None;
    let mut docks_out_of_service = None;
    let mut is_returning = None;

    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? != b'}' {
        let mut expected = 0;
        loop {
            let field = s.field(expected)?;
            expected = field + 1;
            s.ws();
            s.eat(b':')?;
            s.ws();
            // A repeated field is an error for serde: `set` refuses to fill a slot twice.
            match field {
                0 => set(&mut number, StationId::Number(s.uint()?))?,
                1 => set(&mut contract_name, s.string()?)?,
                2 => set(&mut name, s.string()?)?,
                3 => set(&mut address, s.string()?)?,
                4 => set(&mut position, s.position()?)?,
                5 => set(&mut banking, s.boolean()?)?,
                6 => set(&mut bonus, s.boolean()?)?,
                7 => set(&mut bike_stands, s.count()?)?,
                8 => set(&mut available_bike_stands, s.count()?)?,
                9 => set(&mut available_bikes, s.count()?)?,
                10 => set(&mut status, s.status()?)?,
                11 => set(&mut last_update, s.millis()?)?,
                12 => set(&mut snapshot_at, s.millis()?)?,
                13 => set(&mut bikes_by_type, s.vehicle_counts()?)?,
                14 => set(&mut bikes_out_of_service, s.opt_count()?)?,
                15 => set(&mut docks_out_of_service, s.opt_count()?)?,
                _ => set(&mut is_returning, s.opt_boolean()?)?,
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    } else {
        s.i += 1;
    }
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    Some(StationView {
        number: number?,
        contract_name: Cow::Borrowed(contract_name?),
        name: Cow::Borrowed(name.unwrap_or_default()),
        address: Cow::Borrowed(address.unwrap_or_default()),
        position: position?,
        banking: banking.unwrap_or_default(),
        bonus: bonus.unwrap_or_default(),
        bike_stands: bike_stands?,
        available_bike_stands: available_bike_stands?,
        available_bikes: available_bikes?,
        status: status?,
        last_update: last_update.unwrap_or_default(),
        snapshot_at: snapshot_at.unwrap_or_default(),
        bikes_by_type: bikes_by_type.unwrap_or_default(),
        bikes_out_of_service: bikes_out_of_service.unwrap_or_default(),
        docks_out_of_service: docks_out_of_service.unwrap_or_default(),
        is_returning: is_returning.unwrap_or_default(),
    })
}

/// The v1 fields, quoted, in the order velib's producer and the JCDecaux API write them, then
/// velib's own optional ones, in the order [`Station`](crate::Station) writes them.
const FIELDS: [&[u8]; 17] = [
    b"\"number\"",
    b"\"contract_name\"",
    b"\"name\"",
    b"\"address\"",
    b"\"position\"",
    b"\"banking\"",
    b"\"bonus\"",
    b"\"bike_stands\"",
    b"\"available_bike_stands\"",
    b"\"available_bikes\"",
    b"\"status\"",
    b"\"last_update\"",
    b"\"snapshot_at\"",
    b"\"bikes_by_type\"",
    b"\"bikes_out_of_service\"",
    b"\"docks_out_of_service\"",
    b"\"is_returning\"",
];

/// Exact powers of ten (every one up to 10^22 is an `f64` without rounding).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

/// The bytes that end the plain part of a JSON string: the closing quote, an escape, or a
/// control character (invalid in a string).
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The bounds of a string without escapes or control characters, quotes excluded.
    fn string_bounds(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.b[start..]
            .iter()
            .position(|&c| STRING_STOP[usize::from(c)])?;
        self.i = start + len;
        self.eat(b'"')?;
        Some((start, start + len))
    }

    fn raw_string(&mut self) -> Option<&'a [u8]> {
        let (start, end) = self.string_bounds()?;
        Some(&self.b[start..end])
    }

    fn key(&mut self) -> Option<&'a [u8]> {
        self.raw_string()
    }

    /// The index in [`FIELDS`] of the key here; `expected` (the field after the previous one)
    /// is tried first, as records list their fields in the usual order.
    fn field(&mut self, expected: usize) -> Option<usize> {
        if let Some(quoted) = FIELDS.get(expected)
            && self.b[self.i..].starts_with(quoted)
        {
            self.i += quoted.len();
            return Some(expected);
        }
        let key = self.key()?;
        FIELDS.iter().position(|f| &f[1..f.len() - 1] == key)
    }

    fn string(&mut self) -> Option<&'a str> {
        let (start, end) = self.string_bounds()?;
        self.text.get(start..end)
    }

    /// The digits of a non-negative integer (no sign, no fraction, no exponent, no leading
    /// zero), as JSON writes it.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut value: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        // A fraction or an exponent makes it a float, which serde reads another way.
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(value)
    }

    fn count(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    /// Epoch milliseconds: a non-negative integer or `null`.
    fn millis(&mut self) -> Option<Option<i64>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        i64::try_from(self.uint()?).ok().map(Some)
    }

    /// A count or `null`.
    fn opt_count(&mut self) -> Option<Option<u32>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        self.count().map(Some)
    }

    /// A boolean or `null`.
    fn opt_boolean(&mut self) -> Option<Option<bool>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        self.boolean().map(Some)
    }

    /// The per-type counts as velib writes them: an array of objects with exactly
    /// `vehicle_type_id`, `kind` and `count`. `null` is left to serde.
    fn vehicle_counts(&mut self) -> Option<Option<Vec<VehicleCount<'a>>>> {
        self.eat(b'[')?;
        let mut counts = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Some(counts));
        }
        loop {
            self.ws();
            counts.push(self.vehicle_count()?);
            self.ws();
            match self.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
        Some(Some(counts))
    }

    fn vehicle_count(&mut self) -> Option<VehicleCount<'a>> {
        let (mut id, mut kind, mut count) = (None, None, None);
        self.object(|s, key| match key {
            b"vehicle_type_id" => set(&mut id, s.string()?),
            // An unknown kind is `Other` for serde: left to it.
            b"kind" => set(&mut kind, VehicleKind::from_name(s.raw_string()?)?),
            b"count" => set(&mut count, s.count()?),
            _ => None,
        })?;
        Some(VehicleCount {
            vehicle_type_id: Cow::Borrowed(id?),
            kind: kind?,
            count: count?,
        })
    }

    /// A flat object with at least one member, each read by `member` given its key (which
    /// refuses keys it does not know and repeated ones).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        loop {
            self.ws();
            let key = self.key()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)?;
        // `truex` is not `true`.
        match self.peek() {
            Some(c) if c.is_ascii_alphanumeric() => None,
            _ => Some(()),
        }
    }

    fn status(&mut self) -> Option<Status> {
        let s = self.raw_string()?;
        if s.eq_ignore_ascii_case(b"OPEN") {
            Some(Status::Open)
        } else if s.eq_ignore_ascii_case(b"CLOSED") {
            Some(Status::Closed)
        } else {
            None
        }
    }

    /// A coordinate written with a fraction or an exponent (an integer is left to serde, which
    /// reads it as an integer first), read to the nearest `f64` as serde_json does with
    /// `float_roundtrip`.
    fn float(&mut self) -> Option<f64> {
        let start = self.i;
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        let int_len = self.digits();
        if int_len == 0 || (int_len > 1 && self.b[int_start] == b'0') {
            return None;
        }
        let mut frac_len = 0;
        if self.peek() == Some(b'.') {
            self.i += 1;
            frac_len = self.digits();
            if frac_len == 0 {
                return None;
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            exponent = true;
        }
        if frac_len == 0 && !exponent {
            return None;
        }
        // The usual coordinate (at most 15 digits, no exponent) is an integer below 2^53 over
        // an exact power of ten: one correctly rounded division gives the nearest `f64`, the
        // same as any correct parser (Clinger's fast path).
        if !exponent && int_len + frac_len <= 15 {
            let mut mantissa: u64 = 0;
            for &c in &self.b[int_start..self.i] {
                if c != b'.' {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                }
            }
            let value = mantissa as f64 / POW10[frac_len];
            return Some(if negative { -value } else { value });
        }
        let number = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        number.parse::<f64>().ok().filter(|f| f.is_finite())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn position(&mut self) -> Option<Position> {
        let (mut lat, mut lng) = (None, None);
        self.object(|s, key| match key {
            b"lat" => set(&mut lat, s.float()?),
            b"lng" => set(&mut lng, s.float()?),
            _ => None,
        })?;
        Some(Position {
            lat: lat?,
            lng: lng?,
        })
    }
}
