//! Single flight: one loader per key at a time in this process; the others wait for its result.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::error::CacheError;

/// What a flight ends with: the value's JSON text, or the error every waiter gets.
pub(crate) type Landing = Result<Arc<str>, CacheError>;

type Slot = Arc<watch::Sender<Option<Landing>>>;

/// The flights under way, by key.
#[derive(Clone, Default)]
pub(crate) struct Flights {
    under_way: Arc<Mutex<HashMap<String, Slot>>>,
}

/// Whether this caller loads or waits.
pub(crate) enum Role {
    /// Load, then [`Pilot::land`].
    Pilot(Pilot),
    /// Wait for the pilot with [`wait`].
    Passenger(watch::Receiver<Option<Landing>>),
}

/// The caller that loads. Dropped without landing (cancelled), it lets its passengers retry.
pub(crate) struct Pilot {
    flights: Flights,
    key: String,
    slot: Slot,
}

impl Flights {
    /// Joins the flight for `key`, or starts one.
    pub(crate) fn join(&self, key: &str) -> Role {
        let mut under_way = self.under_way.lock();
        if let Some(slot) = under_way.get(key) {
            return Role::Passenger(slot.subscribe());
        }
        let slot: Slot = Arc::new(watch::channel(None).0);
        under_way.insert(key.to_string(), Arc::clone(&slot));
        Role::Pilot(Pilot {
            flights: self.clone(),
            key: key.to_string(),
            slot,
        })
    }

    /// How many flights are under way (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.under_way.lock().len()
    }
}

impl Pilot {
    /// Hands the result to every passenger.
    pub(crate) fn land(self, landing: Landing) {
        self.slot.send_replace(Some(landing));
    }
}

impl Drop for Pilot {
    fn drop(&mut self) {
        let mut under_way = self.flights.under_way.lock();
        if under_way
            .get(&self.key)
            .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
        {
            under_way.remove(&self.key);
        }
    }
}

/// The pilot's result, or `None` if it was cancelled before landing.
pub(crate) async fn wait(mut passenger: watch::Receiver<Option<Landing>>) -> Option<Landing> {
    match passenger.wait_for(Option::is_some).await {
        Ok(landing) => landing.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passengers_get_the_pilots_result_and_the_flight_ends() {
        let flights = Flights::default();
        let Role::Pilot(pilot) = flights.join("k") else {
            panic!("the first caller flies");
        };
        let Role::Passenger(passenger) = flights.join("k") else {
            panic!("the second caller waits");
        };
        let waiting = tokio::spawn(wait(passenger));
        pilot.land(Ok(Arc::from("1")));
        let landing = waiting.await.expect("join").expect("landed");
        assert_eq!(&*landing.expect("a value"), "1");
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), Role::Pilot(_)));
    }

    #[tokio::test]
    async fn a_cancelled_pilot_frees_its_passengers() {
        let flights = Flights::default();
        let pilot = flights.join("k");
        let Role::Passenger(passenger) = flights.join("k") else {
            panic!("the second caller waits");
        };
        drop(pilot);
        assert!(wait(passenger).await.is_none());
        assert!(matches!(flights.join("k"), Role::Pilot(_)));
    }
}
