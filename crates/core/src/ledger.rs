//! Ledger rules: an account's standing, and two-phase holds (TigerBeetle's
//! pending → posted | voided | expired), as pure state transitions.
//!
//! Before forwarding, a request holds its maximum cost; after the response
//! the hold is posted with the real cost (the rest released) or voided if
//! the request failed; a hold left by a crash expires. Each hold is resolved
//! exactly once: every transition starts from `Pending`, and the store keeps
//! the state with the hold so a retried resolution finds it resolved.

use crate::money::Micros;
use crate::time::UnixMillis;

/// What an account can spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Sum of the account's ledger entries.
    pub balance: Micros,
    /// Post-paid credit: how far below zero the balance may go.
    pub credit_limit: Micros,
    /// Pending holds.
    pub held: Micros,
}

impl Standing {
    /// `balance + credit_limit − held`, in wide arithmetic so it never wraps.
    pub fn available(&self) -> i128 {
        i128::from(self.balance.0) + i128::from(self.credit_limit.0) - i128::from(self.held.0)
    }

    /// In good standing for a hold of `amount`: the available money covers it.
    pub fn covers(&self, amount: Micros) -> bool {
        self.available() >= i128::from(amount.0)
    }
}

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Reserved, not yet resolved.
    Pending,
    /// Charged `charged` and released the rest.
    Posted {
        /// The real cost.
        charged: Micros,
    },
    /// Released whole: the request failed or was never sent.
    Voided,
    /// Released whole after its deadline: its request's outcome never came.
    Expired,
}

/// A hold of a request's maximum cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The maximum cost reserved.
    pub amount: Micros,
    /// After this the hold may be expired.
    pub expires_at: UnixMillis,
    /// Its state.
    pub state: HoldState,
}

/// Why a transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// Only a pending hold can be posted, voided or expired.
    #[error("the hold was already resolved ({0:?})")]
    AlreadyResolved(HoldState),
    /// A cost cannot be negative.
    #[error("the cost {0} is negative")]
    NegativeCost(Micros),
    /// A hold cannot be expired before its deadline.
    #[error("the hold has not expired yet")]
    NotExpired,
}

/// What a resolution does to the account: `held` goes down by the amount
/// that was held, `balance` down by `charge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Debited from the balance.
    pub charge: Micros,
    /// The amount the hold reserved, now no longer held.
    pub held: Micros,
}

impl Resolution {
    /// The part of the hold given back without being charged.
    pub fn released(&self) -> Micros {
        Micros((self.held.0 - self.charge.0).max(0))
    }
}

impl Hold {
    /// A new pending hold.
    pub fn new(amount: Micros, expires_at: UnixMillis) -> Self {
        Hold {
            amount,
            expires_at,
            state: HoldState::Pending,
        }
    }

    fn pending(&self) -> Result<(), HoldError> {
        match self.state {
            HoldState::Pending => Ok(()),
            other => Err(HoldError::AlreadyResolved(other)),
        }
    }

    /// Charges the real `cost` and releases the rest of the hold. A cost
    /// above the hold (the upstream reported more than the route's maximum)
    /// is still charged in full: the request happened, and money is never
    /// lost; the account may then dip below its standing.
    pub fn post(&mut self, cost: Micros) -> Result<Resolution, HoldError> {
        self.pending()?;
        if cost.0 < 0 {
            return Err(HoldError::NegativeCost(cost));
        }
        self.state = HoldState::Posted { charged: cost };
        Ok(Resolution {
            charge: cost,
            held: self.amount,
        })
    }

    /// Releases the whole hold without charging.
    pub fn void(&mut self) -> Result<Resolution, HoldError> {
        self.pending()?;
        self.state = HoldState::Voided;
        Ok(Resolution {
            charge: Micros::ZERO,
            held: self.amount,
        })
    }

    /// Releases a hold whose deadline passed, without charging.
    pub fn expire(&mut self, now: UnixMillis) -> Result<Resolution, HoldError> {
        self.pending()?;
        if now < self.expires_at {
            return Err(HoldError::NotExpired);
        }
        self.state = HoldState::Expired;
        Ok(Resolution {
            charge: Micros::ZERO,
            held: self.amount,
        })
    }
}

impl Standing {
    /// Reserves `amount`, if the account covers it.
    pub fn hold(&mut self, amount: Micros) -> bool {
        if amount.0 < 0 || !self.covers(amount) {
            return false;
        }
        self.held = Micros(self.held.0 + amount.0);
        true
    }

    /// Applies a hold's resolution.
    pub fn resolve(&mut self, resolution: Resolution) {
        self.held = Micros(self.held.0 - resolution.held.0);
        self.balance = Micros(self.balance.0 - resolution.charge.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_covers_with_credit_and_holds() {
        let mut account = Standing {
            balance: Micros(100),
            credit_limit: Micros(50),
            held: Micros::ZERO,
        };
        assert!(account.covers(Micros(150)));
        assert!(!account.covers(Micros(151)));
        assert!(account.hold(Micros(120)));
        assert!(!account.hold(Micros(31)), "only 30 left");
        assert!(account.hold(Micros(30)));
        assert_eq!(account.available(), 0);
    }

    #[test]
    fn every_hold_is_resolved_exactly_once() {
        let mut account = Standing {
            balance: Micros(1_000),
            ..Standing::default()
        };
        let mut hold = Hold::new(Micros(300), UnixMillis(10));
        assert!(account.hold(hold.amount));
        let posted = hold.post(Micros(120)).expect("post");
        assert_eq!(
            posted,
            Resolution {
                charge: Micros(120),
                held: Micros(300)
            }
        );
        assert_eq!(posted.released(), Micros(180));
        account.resolve(posted);
        assert_eq!(
            account,
            Standing {
                balance: Micros(880),
                credit_limit: Micros::ZERO,
                held: Micros::ZERO
            }
        );
        // A retried resolution, of any kind, is refused and changes nothing.
        assert!(matches!(
            hold.post(Micros(120)),
            Err(HoldError::AlreadyResolved(_))
        ));
        assert!(matches!(hold.void(), Err(HoldError::AlreadyResolved(_))));
        assert!(matches!(
            hold.expire(UnixMillis(99)),
            Err(HoldError::AlreadyResolved(_))
        ));
    }

    #[test]
    fn void_expire_and_costs_above_the_hold() {
        let mut hold = Hold::new(Micros(50), UnixMillis(10));
        assert_eq!(
            hold.post(Micros(-1)),
            Err(HoldError::NegativeCost(Micros(-1)))
        );
        assert_eq!(hold.expire(UnixMillis(9)), Err(HoldError::NotExpired));
        assert_eq!(
            hold.expire(UnixMillis(10)),
            Ok(Resolution {
                charge: Micros::ZERO,
                held: Micros(50)
            })
        );
        let mut other = Hold::new(Micros(50), UnixMillis(10));
        assert_eq!(
            other.void(),
            Ok(Resolution {
                charge: Micros::ZERO,
                held: Micros(50)
            })
        );
        assert_eq!(other.state, HoldState::Voided);
        // More than held is still charged in full.
        let mut over = Hold::new(Micros(50), UnixMillis(10));
        let resolution = over.post(Micros(70)).expect("post");
        assert_eq!(
            (resolution.charge, resolution.released()),
            (Micros(70), Micros::ZERO)
        );
        let mut account = Standing {
            balance: Micros(100),
            credit_limit: Micros::ZERO,
            held: Micros(50),
        };
        account.resolve(resolution);
        assert_eq!((account.balance, account.held), (Micros(30), Micros::ZERO));
    }
}
