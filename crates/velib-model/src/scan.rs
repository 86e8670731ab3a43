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
    // Only the strings kept as text are checked to be UTF-8 (the station's three at the end,
    // the vehicle type ids as they are read): keys, kinds and `status` are compared with ASCII
    // names, and outside strings only ASCII JSON tokens are accepted, so no other byte can be
    // part of an accepted record unchecked.
    let mut s = Scanner { b: bytes, i: 0 };
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
    s.object(&FIELDS, |s, field| {
        // A repeated field is an error for serde: `set` refuses to fill a slot twice.
        match field {
            0 => set(&mut number, StationId::Number(s.uint()?)),
            1 => set(&mut contract_name, s.string_bounds()?),
            2 => set(&mut name, s.string_bounds()?),
            3 => set(&mut address, s.string_bounds()?),
            4 => set(&mut position, s.position()?),
            5 => set(&mut banking, s.boolean()?),
            6 => set(&mut bonus, s.boolean()?),
            7 => set(&mut bike_stands, s.count()?),
            8 => set(&mut available_bike_stands, s.count()?),
            9 => set(&mut available_bikes, s.count()?),
            10 => set(&mut status, s.status()?),
            11 => set(&mut last_update, s.millis()?),
            12 => set(&mut snapshot_at, s.millis()?),
            13 => set(&mut bikes_by_type, s.vehicle_counts()?),
            14 => set(&mut bikes_out_of_service, s.opt_count()?),
            15 => set(&mut docks_out_of_service, s.opt_count()?),
            _ => set(&mut is_returning, s.opt_boolean()?),
        }
    })?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    // The three texts are checked to be UTF-8 in one call, over the bytes from the first to
    // the last of them: the other bytes there belong to members already accepted, all ASCII
    // or checked text, and a UTF-8 sequence cannot straddle the ASCII quotes around a string,
    // so the span is UTF-8 exactly when each text is.
    let contract_name = contract_name?;
    let texts = [Some(contract_name), name, address];
    let low = texts.iter().flatten().map(|t| t.0).min().unwrap_or(0);
    let high = texts.iter().flatten().map(|t| t.1).max().unwrap_or(0);
    let span = std::str::from_utf8(&s.b[low..high]).ok()?;
    let text = |(start, end): (usize, usize)| span.get(start - low..end - low);
    Some(StationView {
        number: number?,
        contract_name: Cow::Borrowed(text(contract_name)?),
        name: Cow::Borrowed(name.map_or(Some(""), text)?),
        address: Cow::Borrowed(address.map_or(Some(""), text)?),
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

/// The keys of an object's members, in the order records usually list them, with the text
/// that starts each member in a record written without whitespace: `"key":` for the first, and
/// `,"key":` for the others (the separator and key read in one comparison).
struct Members<const N: usize> {
    names: [&'static [u8]; N],
    first: [&'static [u8]; N],
    next: [&'static [u8]; N],
}

macro_rules! members {
    ($($name:literal),* $(,)?) => {
        Members {
            names: [$($name.as_bytes()),*],
            first: [$(concat!("\"", $name, "\":").as_bytes()),*],
            next: [$(concat!(",\"", $name, "\":").as_bytes()),*],
        }
    };
}

/// The v1 fields, in the order velib's producer and the JCDecaux API write them, then velib's
/// own optional ones, in the order [`Station`](crate::Station) writes them.
const FIELDS: Members<17> = members![
    "number",
    "contract_name",
    "name",
    "address",
    "position",
    "banking",
    "bonus",
    "bike_stands",
    "available_bike_stands",
    "available_bikes",
    "status",
    "last_update",
    "snapshot_at",
    "bikes_by_type",
    "bikes_out_of_service",
    "docks_out_of_service",
    "is_returning",
];

/// The members of a per-type count, in the order velib writes them.
const COUNT_FIELDS: Members<3> = members!["vehicle_type_id", "kind", "count"];

/// The members of a position, in the order velib and the JCDecaux API write them.
const POSITION_FIELDS: Members<2> = members!["lat", "lng"];

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
    b: &'a [u8],
    i: usize,
}

/// The length of the plain start of a JSON string's text: the bytes before the closing quote,
/// an escape, or a control character (invalid in a string); `None` if there is none of them.
///
/// Eight bytes at a time (SWAR): the low bit of each byte of the word is spread to a mask
/// where that byte is `"`, `\\` or below 0x20, and the lowest marked byte is the first stop.
/// (The subtraction can mark a byte above a true stop by its borrow, never one below it.)
pub(crate) fn plain_len(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let stops = |word: u64| {
        let quote = word ^ (ONES * u64::from(b'"'));
        let escape = word ^ (ONES * u64::from(b'\\'));
        // A byte is zero in `quote` or `escape` where it was that byte, and below 0x20 where
        // subtracting 0x20 borrows; a byte with its high bit set (UTF-8) is never a stop.
        ((quote.wrapping_sub(ONES) & !quote)
            | (escape.wrapping_sub(ONES) & !escape)
            | (word.wrapping_sub(ONES * 0x20)))
            & !word
            & HIGH
    };
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let found = stops(word);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|n| i + n)
}

/// Whether two byte strings are equal, compared inline eight bytes at a time: the keys here
/// are short, and a call to `memcmp` per key costs more than the comparison.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the word before when `n` is not a multiple of 8.
    word(a, n - 8) == word(b, n - 8)
}

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
        let len = plain_len(&self.b[start..])?;
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

    /// The index in `members` of the key here, with the `:` after it and the whitespace
    /// around it read; `expected` (the member after the previous one) is tried first, as
    /// records list their members in the usual order.
    fn member<const N: usize>(&mut self, members: &Members<N>, expected: usize) -> Option<usize> {
        if let Some(first) = members.first.get(expected)
            && self.at(first)
        {
            self.i += first.len();
            self.ws();
            return Some(expected);
        }
        let key = self.key()?;
        let index = members.names.iter().position(|name| same(name, key))?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(index)
    }

    /// Whether the bytes here start with `word`.
    #[inline]
    fn at(&self, word: &[u8]) -> bool {
        self.b
            .get(self.i..self.i + word.len())
            .is_some_and(|here| same(here, word))
    }

    /// A vehicle type's id: JCDecaux's two without a UTF-8 check, any other checked.
    fn vehicle_type_id(&mut self) -> Option<&'a str> {
        let (start, end) = self.string_bounds()?;
        match &self.b[start..end] {
            b"mechanical" => Some("mechanical"),
            b"electrical" => Some("electrical"),
            other => std::str::from_utf8(other).ok(),
        }
    }

    /// The digits of a non-negative integer (no sign, no fraction, no exponent, no leading
    /// zero), as JSON writes it.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut value: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            self.i += 1;
        }
        let digits = self.i - start;
        // Nineteen digits always fit a u64; longer numbers are left to serde.
        if digits == 0 || digits > 19 || (digits > 1 && self.b[start] == b'0') {
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
        self.object(&COUNT_FIELDS, |s, member| match member {
            0 => set(&mut id, s.vehicle_type_id()?),
            // An unknown kind is `Other` for serde: left to it.
            1 => set(&mut kind, VehicleKind::from_name(s.raw_string()?)?),
            _ => set(&mut count, s.count()?),
        })?;
        Some(VehicleCount {
            vehicle_type_id: Cow::Borrowed(id?),
            kind: kind?,
            count: count?,
        })
    }

    /// A flat object with at least one member, each read by `member` given the index of its
    /// key in `members` (keys not there are refused, and `member` refuses repeated ones).
    fn object<const N: usize>(
        &mut self,
        members: &Members<N>,
        mut member: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        let mut index = self.member(members, 0)?;
        loop {
            member(self, index)?;
            let expected = index + 1;
            // The usual record: the next member's separator and key, without whitespace.
            if let Some(next) = members.next.get(expected)
                && self.at(next)
            {
                self.i += next.len();
                self.ws();
                index = expected;
                continue;
            }
            self.ws();
            match self.next()? {
                b',' => {
                    self.ws();
                    index = self.member(members, expected)?;
                }
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

    /// Reads the decimal digits here, giving how many there were.
    fn digits(&mut self) -> usize {
        let rest = &self.b[self.i..];
        let n = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        self.i += n;
        n
    }

    fn position(&mut self) -> Option<Position> {
        let (mut lat, mut lng) = (None, None);
        self.object(&POSITION_FIELDS, |s, member| match member {
            0 => set(&mut lat, s.float()?),
            _ => set(&mut lng, s.float()?),
        })?;
        Some(Position {
            lat: lat?,
            lng: lng?,
        })
    }
}
