//! Observations gathered into one report, bounded in count and in encoded size so that a report
//! fits the bus (1 MiB) and one event-log append with room to spare.

use bulkhead_schema::messages::inventory::Observation;

#[derive(Debug)]
pub struct Batch {
    observations: Vec<Observation>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

/// The size `observation` takes in a report, as the wire encodes it (named MessagePack maps).
fn encoded_len(observation: &Observation) -> usize {
    rmp_serde::to_vec_named(observation)
        .expect("observations are plain data")
        .len()
}

impl Batch {
    /// A batch of `first` alone, whatever its size: a Kubernetes object is far below the byte
    /// bound (the API server caps annotations at 256 KiB), so one observation always fits the
    /// bus.
    pub fn new(first: Observation, max_count: usize, max_bytes: usize) -> Self {
        Batch {
            bytes: encoded_len(&first),
            observations: vec![first],
            max_count,
            max_bytes,
        }
    }

    /// Adds `observation`, or hands it back when the batch has no room for it.
    pub fn push(&mut self, observation: Observation) -> Option<Observation> {
        let len = encoded_len(&observation);
        if self.is_full() || self.bytes + len > self.max_bytes {
            return Some(observation);
        }
        self.bytes += len;
        self.observations.push(observation);
        None
    }

    pub fn is_full(&self) -> bool {
        self.observations.len() >= self.max_count
    }

    pub fn into_observations(self) -> Vec<Observation> {
        self.observations
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_schema::messages::inventory::ResourceKind;

    use super::*;

    fn deleted(i: usize) -> Observation {
        Observation::Deleted {
            kind: ResourceKind::Pod,
            uid: format!("{i:036}"),
        }
    }

    #[test]
    fn bounded_by_count() {
        let mut batch = Batch::new(deleted(1), 2, usize::MAX);
        assert!(!batch.is_full());
        assert_eq!(batch.push(deleted(2)), None);
        assert!(batch.is_full());
        assert_eq!(batch.push(deleted(3)), Some(deleted(3)), "handed back");
        assert_eq!(batch.into_observations(), vec![deleted(1), deleted(2)]);
    }

    #[test]
    fn bounded_by_encoded_size() {
        let one = encoded_len(&deleted(1));
        let mut batch = Batch::new(deleted(1), 100, 2 * one + one / 2);
        assert_eq!(batch.push(deleted(2)), None);
        assert_eq!(batch.push(deleted(3)), Some(deleted(3)));
        assert_eq!(batch.into_observations().len(), 2);
    }

    #[test]
    fn the_first_observation_goes_in_whatever_its_size() {
        let mut batch = Batch::new(deleted(1), 10, 1);
        assert_eq!(batch.push(deleted(2)), Some(deleted(2)));
        assert_eq!(batch.into_observations(), vec![deleted(1)]);
    }
}
