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
    pub fn new(max_count: usize, max_bytes: usize) -> Self {
        Batch {
            observations: Vec::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    /// Adds `observation`, or hands it back when the batch has no room for it. An empty batch
    /// takes anything: a Kubernetes object is far below the byte bound (the API server caps
    /// annotations at 256 KiB), so one observation alone always fits the bus.
    pub fn push(&mut self, observation: Observation) -> Result<(), Observation> {
        let len = encoded_len(&observation);
        if !self.observations.is_empty() && (self.is_full() || self.bytes + len > self.max_bytes) {
            return Err(observation);
        }
        self.bytes += len;
        self.observations.push(observation);
        Ok(())
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
        let mut batch = Batch::new(2, usize::MAX);
        assert!(batch.push(deleted(1)).is_ok());
        assert!(!batch.is_full());
        assert!(batch.push(deleted(2)).is_ok());
        assert!(batch.is_full());
        assert_eq!(batch.push(deleted(3)), Err(deleted(3)), "handed back");
        assert_eq!(batch.into_observations(), vec![deleted(1), deleted(2)]);
    }

    #[test]
    fn bounded_by_encoded_size() {
        let one = encoded_len(&deleted(1));
        let mut batch = Batch::new(100, 2 * one + one / 2);
        assert!(batch.push(deleted(1)).is_ok());
        assert!(batch.push(deleted(2)).is_ok());
        assert_eq!(batch.push(deleted(3)), Err(deleted(3)));
        assert_eq!(batch.into_observations().len(), 2);
    }

    #[test]
    fn an_empty_batch_takes_even_an_oversized_observation() {
        let mut batch = Batch::new(10, 1);
        assert!(batch.push(deleted(1)).is_ok());
        assert_eq!(batch.push(deleted(2)), Err(deleted(2)));
    }
}
