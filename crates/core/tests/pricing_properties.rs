//! Charges of a cycle add up to exactly the price of its total usage,
//! whatever the order and size of the requests.

use proptest::prelude::*;
use tollgate_core::pricing::{Schedule, Tier};

proptest! {
    #[test]
    fn charges_telescope_to_the_cycle_total(
        included in 0u64..1_000,
        bound in 1u64..5_000,
        p1 in 0u64..1_000, per1 in 1u64..1_000,
        p2 in 0u64..1_000, per2 in 1u64..1_000,
        requests in proptest::collection::vec(0u64..700, 1..100),
    ) {
        let schedule = Schedule::new(included, vec![
            Tier { up_to: Some(bound), price_micros: p1, per_units: per1 },
            Tier { up_to: None, price_micros: p2, per_units: per2 },
        ]).expect("valid");
        let mut used = 0u64;
        let mut charged = 0i64;
        for units in requests {
            let charge = schedule.charge(used, units);
            prop_assert!(charge.0 >= 0, "a charge is never negative");
            prop_assert!(charge <= schedule.max_charge(units), "holds sized by max_charge always cover the charge");
            charged += charge.0;
            used += units;
        }
        prop_assert_eq!(charged, schedule.cost_of_total(used).0);
    }
}
