//! Vehicle types interned to one byte, and the small inline lists a station keeps of them: a
//! station's per-type counts cost three or five bytes a type, in place, instead of a string
//! and a heap allocation each.

use velib_model::VehicleKind;

/// The vehicle types seen so far, each named by its index.
///
/// Real systems have two or three types (JCDecaux's `electrical` and `mechanical`); a
/// [`Tracker`](crate::Tracker) holds one table for all its stations. Past 256 distinct
/// (id, kind) pairs, a record's types are not interned and its activity falls back to the
/// total (see [`TypeTable::intern`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeTable {
    types: Vec<(Box<str>, VehicleKind)>,
}

/// The most types a table holds: the index is a `u8`.
const MAX_TYPES: usize = 256;

impl TypeTable {
    /// The index of type `id` of `kind`, added if new; `None` when the table is full.
    pub(crate) fn intern(&mut self, id: &str, kind: VehicleKind) -> Option<u8> {
        if let Some(i) = self
            .types
            .iter()
            .position(|(t, k)| &**t == id && *k == kind)
        {
            return u8::try_from(i).ok();
        }
        if self.types.len() >= MAX_TYPES {
            return None;
        }
        self.types.push((id.into(), kind));
        u8::try_from(self.types.len() - 1).ok()
    }

    /// The id and kind of type `index`.
    ///
    /// # Panics
    ///
    /// When `index` was not given by [`TypeTable::intern`] of this table.
    pub(crate) fn get(&self, index: u8) -> (&str, VehicleKind) {
        let (id, kind) = &self.types[usize::from(index)];
        (id, *kind)
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.types.capacity() * std::mem::size_of::<(Box<str>, VehicleKind)>()
            + self.types.iter().map(|(t, _)| t.len()).sum::<usize>()
    }
}

/// The most types one record's counts, or one window's tallies, keep. Real feeds give one or
/// two (the day recorded in `shared/data` never more than two); a record naming more is kept
/// without its per-type counts (its activity is then counted from the total, as for a record
/// without types), and a window that meets a fourth type counts its movements in the totals
/// only.
pub(crate) const INLINE_TYPES: usize = 3;

/// `len` of a list that is absent (the record did not count by type; no transition with types
/// on both sides fell in the window).
const ABSENT: u8 = u8::MAX;

/// A record's bikes per type, in place: `(type, count)` pairs, or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeCounts {
    len: u8,
    items: [(u8, u16); INLINE_TYPES],
}

impl TypeCounts {
    /// No per-type counts.
    pub(crate) const ABSENT: TypeCounts = TypeCounts {
        len: ABSENT,
        items: [(0, 0); INLINE_TYPES],
    };

    /// The counts of `pairs`; absent when there are more than [`INLINE_TYPES`] of them, or when
    /// one is `None` (a type the table cannot name).
    pub(crate) fn collect(pairs: impl ExactSizeIterator<Item = Option<(u8, u16)>>) -> TypeCounts {
        if pairs.len() > INLINE_TYPES {
            return TypeCounts::ABSENT;
        }
        let mut out = TypeCounts {
            len: 0,
            items: [(0, 0); INLINE_TYPES],
        };
        for pair in pairs {
            let Some(pair) = pair else {
                return TypeCounts::ABSENT;
            };
            out.items[usize::from(out.len)] = pair;
            out.len += 1;
        }
        out
    }

    /// The pairs, `None` when absent.
    pub(crate) fn get(&self) -> Option<&[(u8, u16)]> {
        (self.len != ABSENT).then(|| &self.items[..usize::from(self.len)])
    }
}

/// Rentals and returns of one type in a window. Per type counts are `u16`, saturating: 65,535
/// movements of one type in one window is beyond any station (the totals are `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tally {
    pub(crate) ty: u8,
    pub(crate) rentals: u16,
    pub(crate) returns: u16,
}

/// A window's tallies per type, in place, in the order the types were first met; absent until
/// a transition with types on both sides falls in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tallies {
    len: u8,
    items: [Tally; INLINE_TYPES],
}

impl Tallies {
    /// No tally yet.
    pub(crate) const ABSENT: Tallies = Tallies {
        len: ABSENT,
        items: [Tally {
            ty: 0,
            rentals: 0,
            returns: 0,
        }; INLINE_TYPES],
    };

    /// The tallies, `None` when absent.
    pub(crate) fn get(&self) -> Option<&[Tally]> {
        (self.len != ABSENT).then(|| &self.items[..usize::from(self.len)])
    }

    /// Present from now on, with no tally if none yet.
    pub(crate) fn start(&mut self) {
        if self.len == ABSENT {
            self.len = 0;
        }
    }

    /// Adds `rentals` and `returns` (already clamped) to type `ty`'s tally (starting the
    /// list); a type beyond [`INLINE_TYPES`] is not tallied. `false` when it was not.
    pub(crate) fn add(&mut self, ty: u8, rentals: u16, returns: u16) -> bool {
        self.start();
        let len = usize::from(self.len);
        let tally = match self.items[..len].iter_mut().position(|t| t.ty == ty) {
            Some(i) => &mut self.items[i],
            None if len < INLINE_TYPES => {
                self.len += 1;
                self.items[len] = Tally {
                    ty,
                    rentals: 0,
                    returns: 0,
                };
                &mut self.items[len]
            }
            None => return false,
        };
        tally.rentals = tally.rentals.saturating_add(rentals);
        tally.returns = tally.returns.saturating_add(returns);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_keeps_its_index_and_the_table_has_a_limit() {
        let mut table = TypeTable::default();
        let e = table.intern("electrical", VehicleKind::Electric).unwrap();
        let m = table.intern("mechanical", VehicleKind::Classic).unwrap();
        assert_eq!(table.intern("electrical", VehicleKind::Electric), Some(e));
        assert_ne!(e, m);
        assert_eq!(table.get(m), ("mechanical", VehicleKind::Classic));
        for i in 2..MAX_TYPES {
            assert!(table.intern(&i.to_string(), VehicleKind::Other).is_some());
        }
        assert_eq!(table.intern("one too many", VehicleKind::Other), None);
        assert_eq!(table.intern("mechanical", VehicleKind::Classic), Some(m));
    }

    #[test]
    fn inline_lists_hold_three_types_and_say_when_absent() {
        let three = TypeCounts::collect([Some((0, 4)), Some((1, 3)), Some((0, 1))].into_iter());
        assert_eq!(three.get(), Some(&[(0, 4), (1, 3), (0, 1)][..]));
        let empty = TypeCounts::collect(std::iter::empty());
        assert_eq!(empty.get(), Some(&[][..]));
        assert_eq!(TypeCounts::ABSENT.get(), None);
        let four = TypeCounts::collect([Some((0, 1)); 4].into_iter());
        assert_eq!(
            four.get(),
            None,
            "more than it holds: counted from the total"
        );
        assert_eq!(TypeCounts::collect([None].into_iter()).get(), None);

        let mut tallies = Tallies::ABSENT;
        assert_eq!(tallies.get(), None);
        for ty in 0..3 {
            assert!(tallies.add(ty, 1, 2));
        }
        assert!(tallies.add(1, u16::MAX, 0), "saturates");
        assert!(!tallies.add(3, 1, 1), "a fourth type is not tallied");
        let kept = tallies.get().unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(
            (kept[1].ty, kept[1].rentals, kept[1].returns),
            (1, u16::MAX, 2)
        );
    }
}
