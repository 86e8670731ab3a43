//! Rentals and returns from two consecutive records of a station.
//!
//! A feed says how many bikes a station holds, never who took one. Between two records, a
//! vehicle type whose count went down lost that many bikes (rentals) and one whose count went
//! up gained that many (returns). When either record has no per-type counts, the total
//! (`available_bikes`) decides instead.
//!
//! # What netting hides
//!
//! Only the difference between two snapshots is seen, so everything that cancels out within
//! one poll interval is invisible: a bike taken and another of the same type returned between
//! two snapshots is no movement at all, and three taken and one returned is two rentals. The
//! per-type counts hide less than the total (an e-bike taken and a classic bike returned is
//! one rental and one return by type, nothing in the total), which is why they are preferred.
//! The figures are therefore lower bounds, the more so the longer the interval (15 minutes
//! in the recorded day of `shared/data`, a second or a few for a live feed) and the busier
//! the station. A count can also move without a rider: a bike put out of service leaves the
//! available count (a "rental"), a truck rebalancing the network takes or brings a dozen at
//! once; neither can be told apart from riders in the feed.

use velib_model::{StationView, TypeActivity, VehicleKind};

/// Rentals and returns between two consecutive records of one station.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Bikes taken: decreases (per type when both records count by type).
    pub rentals: u32,
    /// Bikes brought: increases.
    pub returns: u32,
    /// Per vehicle type, when both records count bikes by type; types in the order they are
    /// first named, `after`'s first.
    pub by_type: Option<Vec<TypeActivity>>,
}

/// The activity between `before` and `after`, two consecutive records of one station.
///
/// ```
/// use velib_model::Station;
/// use velib_stats::activity;
///
/// let station = |electrical: u32, mechanical: u32| {
///     Station::from_json(format!(r#"{{"number": 1, "contract_name": "lyon",
///         "position": {{"lat": 45.7, "lng": 4.8}}, "status": "OPEN", "bike_stands": 20,
///         "available_bike_stands": 10, "available_bikes": {},
///         "bikes_by_type": [
///             {{"vehicle_type_id": "electrical", "kind": "electric", "count": {electrical}}},
///             {{"vehicle_type_id": "mechanical", "kind": "classic", "count": {mechanical}}}]}}"#,
///         electrical + mechanical).as_bytes()).unwrap()
/// };
/// // One e-bike taken, one classic bike returned: the total did not move.
/// let moved = activity(&station(3, 2).view(), &station(2, 3).view());
/// assert_eq!((moved.rentals, moved.returns), (1, 1));
/// ```
pub fn activity(before: &StationView<'_>, after: &StationView<'_>) -> Activity {
    match (typed(before), typed(after)) {
        (Some(b), Some(a)) => {
            let mut out = Activity {
                by_type: Some(Vec::new()),
                ..Activity::default()
            };
            type_deltas(
                &b,
                &a,
                |(id, kind): (&str, VehicleKind), rentals, returns| {
                    out.rentals += rentals;
                    out.returns += returns;
                    if let Some(by_type) = out.by_type.as_mut() {
                        by_type.push(TypeActivity {
                            vehicle_type_id: id.to_owned(),
                            kind,
                            rentals,
                            returns,
                        });
                    }
                },
            );
            out
        }
        _ => {
            let (rentals, returns) = delta(before.available_bikes, after.available_bikes);
            Activity {
                rentals,
                returns,
                by_type: None,
            }
        }
    }
}

/// A record's per-type counts, each type named by its id and kind.
fn typed<'s>(station: &'s StationView<'_>) -> Option<Vec<((&'s str, VehicleKind), u32)>> {
    station.bikes_by_type.as_ref().map(|counts| {
        counts
            .iter()
            .map(|c| ((c.vehicle_type_id.as_ref(), c.kind), c.count))
            .collect()
    })
}

/// `(rentals, returns)` of a count going from `before` to `after`.
pub(crate) fn delta(before: u32, after: u32) -> (u32, u32) {
    (before.saturating_sub(after), after.saturating_sub(before))
}

/// Calls `each(type, rentals, returns)` for every type named in `before` or `after`
/// (`after`'s first, in order), a type missing from a list counting 0 there (GBFS lists the
/// types a station holds) and a type named twice counting the sum of its entries.
pub(crate) fn type_deltas<T: Copy + Eq, C: Copy + Into<u32>>(
    before: &[(T, C)],
    after: &[(T, C)],
    mut each: impl FnMut(T, u32, u32),
) {
    let sum = |list: &[(T, C)], ty: T| {
        list.iter()
            .filter(|(t, _)| *t == ty)
            .fold(0u32, |s, (_, c)| s.saturating_add((*c).into()))
    };
    let named = after.iter().chain(before).map(|(t, _)| *t);
    for (i, ty) in named.clone().enumerate() {
        // Each type once: skip a type already named earlier in the chain.
        if named.clone().take(i).any(|t| t == ty) {
            continue;
        }
        let (rentals, returns) = delta(sum(before, ty), sum(after, ty));
        each(ty, rentals, returns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deltas(before: &[(u8, u32)], after: &[(u8, u32)]) -> Vec<(u8, u32, u32)> {
        let mut out = Vec::new();
        type_deltas(before, after, |t, r, b| out.push((t, r, b)));
        out
    }

    #[test]
    fn a_type_missing_from_a_list_counts_zero() {
        assert_eq!(deltas(&[(1, 3)], &[(2, 2)]), vec![(2, 0, 2), (1, 3, 0)]);
        assert_eq!(deltas(&[], &[]), vec![]);
    }

    #[test]
    fn a_type_named_twice_counts_once_with_its_sum() {
        assert_eq!(
            deltas(&[(1, 1), (1, 2)], &[(1, 1), (2, 1)]),
            vec![(1, 2, 0), (2, 0, 1)]
        );
    }

    #[test]
    fn without_types_the_total_decides() {
        assert_eq!(delta(5, 2), (3, 0));
        assert_eq!(delta(2, 5), (0, 3));
        assert_eq!(delta(4, 4), (0, 0));
    }
}
