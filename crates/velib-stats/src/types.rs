//! Vehicle types interned to one byte, so that a station's per-type counts cost three bytes a
//! type instead of a string each.

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
}
