//! The state changelog's form of one station's statistics state: compact binary, versioned.
//!
//! A monitor with `--stats` writes a station's state to its changelog in every transaction
//! that changed it, so the form is made to be cheap to write and small: fixed-width
//! little-endian fields in a fixed order, about 150 bytes for a station with two vehicle types
//! (the JSON form it replaces took over 600 bytes and twenty times as long to write). Vehicle
//! types are named by id and kind in a small table at its start, since a tracker's type
//! indices mean nothing to another process.
//!
//! ```text
//! version        u8   = 1
//! types          u8   n, then n × (kind u8, id length u8, id bytes)
//! last record    at i64, bikes u16, docks u16, capacity u16, docks out u16, flags u8,
//!                counts u8 (255: none by type), then each (type u8, count u16)
//! open window    see below
//! sealed window  u8 0 (none) or 1, then a window
//! health         quarters [u8; 24], seen [u8; 12], still since i64, health u8
//!
//! window         start i64, records u32, late u32, rentals u32, returns u32,
//!                bikes min u16, max u16, docks min u16, max u16,
//!                bikes × ms u64, docks × ms u64, known u32, empty u32, full u32,
//!                docks out u32, closed u32,
//!                tallies u8 (255: none), then each (type u8, rentals u16, returns u16)
//! ```
//!
//! A new field means a new version; a reader keeps reading the versions before it. The JSON
//! form written before this one is still read ([`crate::legacy`]).

use crate::health::{HealthState, Profile};
use crate::station::StationState;
use crate::types::{INLINE_TYPES, Tallies, TypeCounts, TypeTable};
use crate::window::{DOCKS_OUT_KNOWN, Gauge, OPEN, Reading, Window};
use velib_model::{Health, VehicleKind};

/// The version this build writes.
pub(crate) const VERSION: u8 = 1;

/// Why a binary state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A version this build does not know (written by a newer velib).
    #[error("unknown statistics state version {0} (this velib reads version {VERSION})")]
    Version(u8),
    /// The value ends before its last field.
    #[error("the statistics state ends early, at byte {0}")]
    Truncated(usize),
    /// Bytes left after the last field.
    #[error("{0} bytes after the end of the statistics state")]
    Trailing(usize),
    /// A field holds a value it cannot hold.
    #[error("the statistics state's {0} is out of range")]
    Invalid(&'static str),
}

/// Appends `state` (and `sealed`, its window in its grace period) to `out`, types named from
/// `table`.
pub(crate) fn encode(
    state: &StationState,
    sealed: Option<&Window>,
    table: &TypeTable,
    out: &mut Vec<u8>,
) {
    // The station's types, each once, in the order met: [`INLINE_TYPES`] each for the record
    // and for each window.
    let mut local = [0u8; 3 * INLINE_TYPES];
    let mut n = 0;
    let readings = state.last.types.get().into_iter().flatten().map(|p| p.0);
    let tallies = [Some(&state.open), sealed]
        .into_iter()
        .flatten()
        .filter_map(|w| w.types.get())
        .flatten()
        .map(|t| t.ty);
    for ty in readings.chain(tallies) {
        if !local[..n].contains(&ty) {
            local[n] = ty;
            n += 1;
        }
    }
    let local = &local[..n];
    let index = |ty: u8| local.iter().position(|&t| t == ty).unwrap_or(0) as u8;
    out.push(VERSION);
    out.push(n as u8);
    for &ty in local {
        let (id, kind) = table.get(ty);
        // Ids longer than 255 bytes are cut: no feed names a type at such length.
        let id = &id.as_bytes()[..id.len().min(255)];
        out.extend_from_slice(&[kind_code(kind), id.len() as u8]);
        out.extend_from_slice(id);
    }
    let r = &state.last;
    out.extend_from_slice(&r.at.to_le_bytes());
    for v in [r.bikes, r.docks, r.capacity, r.docks_out] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(r.flags);
    match r.types.get() {
        None => out.push(u8::MAX),
        Some(pairs) => {
            out.push(pairs.len() as u8);
            for &(ty, count) in pairs {
                out.push(index(ty));
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
    }
    window(&state.open, index, out);
    match sealed {
        None => out.push(0),
        Some(w) => {
            out.push(1);
            window(w, index, out);
        }
    }
    let h = &state.health;
    out.extend_from_slice(&h.profile.quarters);
    out.extend_from_slice(&h.profile.seen);
    out.extend_from_slice(&h.still_since.to_le_bytes());
    out.push(health_code(h.health));
}

fn window(w: &Window, index: impl Fn(u8) -> u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&w.start.to_le_bytes());
    for v in [w.records, w.late, w.rentals, w.returns] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [w.bikes.min, w.bikes.max, w.docks.min, w.docks.max] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&w.bikes_weighted.to_le_bytes());
    out.extend_from_slice(&w.docks_weighted.to_le_bytes());
    for v in [w.known, w.empty, w.full, w.docks_out, w.closed] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    match w.types.get() {
        None => out.push(u8::MAX),
        Some(tallies) => {
            out.push(tallies.len() as u8);
            for t in tallies {
                out.push(index(t.ty));
                out.extend_from_slice(&t.rentals.to_le_bytes());
                out.extend_from_slice(&t.returns.to_le_bytes());
            }
        }
    }
}

/// Reads a state [`encode`] wrote, its types interned into `table`; the state and its sealed
/// window. A type `table` cannot hold any more is [`DecodeError::Invalid`].
pub(crate) fn decode(
    bytes: &[u8],
    table: &mut TypeTable,
) -> Result<(StationState, Option<Window>), DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let n = usize::from(r.u8()?);
    if n > 3 * INLINE_TYPES {
        return Err(DecodeError::Invalid("type table"));
    }
    let mut local = [0u8; 3 * INLINE_TYPES];
    for slot in local.iter_mut().take(n) {
        let kind = kind_of(r.u8()?)?;
        let len = usize::from(r.u8()?);
        let id = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::Invalid("type id"))?;
        *slot = table
            .intern(id, kind)
            .ok_or(DecodeError::Invalid("type table (more than 256 types)"))?;
    }
    let local = &local[..n];
    let ty = |i: u8| {
        local
            .get(usize::from(i))
            .copied()
            .ok_or(DecodeError::Invalid("type index"))
    };
    let at = r.i64()?;
    let (bikes, docks, capacity, docks_out) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    let flags = r.u8()?;
    if flags & !(OPEN | DOCKS_OUT_KNOWN) != 0 {
        return Err(DecodeError::Invalid("record flags"));
    }
    let types = match r.u8()? {
        u8::MAX => TypeCounts::ABSENT,
        len if usize::from(len) <= INLINE_TYPES => {
            let mut pairs = [(0u8, 0u16); INLINE_TYPES];
            for pair in pairs.iter_mut().take(usize::from(len)) {
                *pair = (ty(r.u8()?)?, r.u16()?);
            }
            TypeCounts::collect(pairs[..usize::from(len)].iter().map(|&p| Some(p)))
        }
        _ => return Err(DecodeError::Invalid("record's type counts")),
    };
    let last = Reading {
        at,
        bikes,
        docks,
        capacity,
        docks_out,
        flags,
        types,
    };
    let open = read_window(&mut r, ty)?;
    let sealed = match r.u8()? {
        0 => None,
        1 => Some(read_window(&mut r, ty)?),
        _ => return Err(DecodeError::Invalid("sealed window marker")),
    };
    let mut profile = Profile::default();
    profile.quarters.copy_from_slice(r.take(24)?);
    profile.seen.copy_from_slice(r.take(12)?);
    let still_since = r.i64()?;
    let health = health_of(r.u8()?)?;
    if r.at != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - r.at));
    }
    let state = StationState {
        last,
        open,
        health: HealthState {
            profile,
            still_since,
            health,
        },
    };
    Ok((state, sealed))
}

fn read_window(
    r: &mut Reader<'_>,
    ty: impl Fn(u8) -> Result<u8, DecodeError>,
) -> Result<Window, DecodeError> {
    let mut w = Window::new(r.i64()?);
    (w.records, w.late, w.rentals, w.returns) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    w.bikes = Gauge {
        min: r.u16()?,
        max: r.u16()?,
    };
    w.docks = Gauge {
        min: r.u16()?,
        max: r.u16()?,
    };
    (w.bikes_weighted, w.docks_weighted) = (r.u64()?, r.u64()?);
    (w.known, w.empty, w.full, w.docks_out, w.closed) =
        (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    w.types = match r.u8()? {
        u8::MAX => Tallies::ABSENT,
        len if usize::from(len) <= INLINE_TYPES => {
            let mut tallies = Tallies::ABSENT;
            tallies.start();
            for _ in 0..len {
                let (t, rentals, returns) = (ty(r.u8()?)?, r.u16()?, r.u16()?);
                if !tallies.add(t, rentals, returns) {
                    return Err(DecodeError::Invalid("window's tallies"));
                }
            }
            tallies
        }
        _ => return Err(DecodeError::Invalid("window's tallies")),
    };
    Ok(w)
}

fn kind_code(kind: VehicleKind) -> u8 {
    match kind {
        VehicleKind::Classic => 0,
        VehicleKind::Electric => 1,
        VehicleKind::Other => 2,
    }
}

fn kind_of(code: u8) -> Result<VehicleKind, DecodeError> {
    match code {
        0 => Ok(VehicleKind::Classic),
        1 => Ok(VehicleKind::Electric),
        2 => Ok(VehicleKind::Other),
        _ => Err(DecodeError::Invalid("vehicle kind")),
    }
}

fn health_code(health: Health) -> u8 {
    match health {
        Health::Ok => 0,
        Health::Locked => 1,
        Health::Degraded => 2,
    }
}

fn health_of(code: u8) -> Result<Health, DecodeError> {
    match code {
        0 => Ok(Health::Ok),
        1 => Ok(Health::Locked),
        2 => Ok(Health::Degraded),
        _ => Err(DecodeError::Invalid("health")),
    }
}

/// Fixed-width little-endian fields read in turn.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.bytes.len()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}
