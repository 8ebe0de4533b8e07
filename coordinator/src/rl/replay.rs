//! The bounded replay buffer of transitions, and padded tensor batches of
//! them (observations have as many pairs as their episode has nodes).

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::RlError;
use super::env::Observation;
use super::features::N_FEATURES;

/// One step of experience.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// What the agent saw.
    pub obs: Observation,
    /// The node it chose (index into the observation's pairs).
    pub action: usize,
    /// The reward it got.
    pub reward: f32,
    /// The next step's observation; `None` at the end of the episode.
    pub next: Option<Observation>,
}

/// A ring buffer of at most `capacity` transitions; the oldest go first.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    capacity: usize,
    items: Vec<Transition>,
    next: usize,
    rng: StdRng,
}

impl ReplayBuffer {
    /// An empty buffer holding at most `capacity` (at least 1) transitions,
    /// sampling with a seeded RNG.
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            items: Vec::new(),
            next: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Adds a transition, evicting the oldest when full.
    pub fn push(&mut self, t: Transition) {
        if self.items.len() < self.capacity {
            self.items.push(t);
        } else {
            self.items[self.next] = t;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// Transitions held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every transition held (in storage order).
    pub fn items(&self) -> &[Transition] {
        &self.items
    }

    /// `n` indices drawn uniformly with replacement.
    pub fn sample_indices(&mut self, n: usize) -> Vec<usize> {
        let len = self.items.len();
        (0..n).map(|_| self.rng.random_range(0..len)).collect()
    }

    /// A batch of `n` transitions drawn uniformly with replacement.
    pub fn sample(&mut self, n: usize, device: &Device) -> Result<Batch, RlError> {
        if self.items.is_empty() {
            return Err(RlError::InvalidArgument(
                "sampling an empty replay buffer".into(),
            ));
        }
        let idx = self.sample_indices(n);
        let picked: Vec<&Transition> = idx.iter().map(|&i| &self.items[i]).collect();
        Batch::new(&picked, device)
    }
}

/// Transitions as padded tensors. `P` is the most pairs of any observation
/// in the batch, `P'` of any next observation; padding pairs are masked.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, P, F]` pair features.
    pub obs: Tensor,
    /// `[B, P]` 1.0 where a pair may be chosen, else 0.0.
    pub mask: Tensor,
    /// `[B, 1]` u32 chosen pair.
    pub action: Tensor,
    /// `[B]` rewards.
    pub reward: Tensor,
    /// `[B, P', F]` next pair features (one zero pair when terminal).
    pub next_obs: Tensor,
    /// `[B, P']` next mask (the one zero pair is valid when terminal).
    pub next_mask: Tensor,
    /// `[B]` 1.0 when the episode ended.
    pub done: Tensor,
    /// `[B]` number of choosable pairs (for the target entropy).
    pub n_valid: Tensor,
}

/// Pads observations to `[B, P, F]` features and `[B, P]` mask.
fn pad(obs: &[Option<&Observation>]) -> (Vec<f32>, Vec<f32>, usize) {
    let p = obs
        .iter()
        .map(|o| o.map_or(1, Observation::n_pairs))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut feats = vec![0.0f32; obs.len() * p * N_FEATURES];
    let mut mask = vec![0.0f32; obs.len() * p];
    for (b, o) in obs.iter().enumerate() {
        match o {
            Some(o) => {
                let base = b * p * N_FEATURES;
                feats[base..base + o.features.len()].copy_from_slice(&o.features);
                for (j, &m) in o.mask.iter().enumerate() {
                    mask[b * p + j] = f32::from(u8::from(m));
                }
            }
            // A terminal "next state": one valid all-zero pair keeps every
            // sum finite; (1 - done) zeroes its value anyway.
            None => mask[b * p] = 1.0,
        }
    }
    (feats, mask, p)
}

impl Batch {
    /// Stacks transitions into tensors on `device`.
    pub fn new(ts: &[&Transition], device: &Device) -> Result<Self, RlError> {
        let b = ts.len();
        let (f, m, p) = pad(&ts.iter().map(|t| Some(&t.obs)).collect::<Vec<_>>());
        let (nf, nm, np) = pad(&ts.iter().map(|t| t.next.as_ref()).collect::<Vec<_>>());
        let n_valid: Vec<f32> = ts
            .iter()
            .map(|t| t.obs.mask.iter().filter(|&&m| m).count() as f32)
            .collect();
        Ok(Self {
            obs: Tensor::from_vec(f, (b, p, N_FEATURES), device)?,
            mask: Tensor::from_vec(m, (b, p), device)?,
            action: Tensor::from_vec(
                ts.iter().map(|t| t.action as u32).collect::<Vec<_>>(),
                (b, 1),
                device,
            )?,
            reward: Tensor::from_vec(ts.iter().map(|t| t.reward).collect::<Vec<_>>(), b, device)?,
            next_obs: Tensor::from_vec(nf, (b, np, N_FEATURES), device)?,
            next_mask: Tensor::from_vec(nm, (b, np), device)?,
            done: Tensor::from_vec(
                ts.iter()
                    .map(|t| f32::from(u8::from(t.next.is_none())))
                    .collect::<Vec<_>>(),
                b,
                device,
            )?,
            n_valid: Tensor::from_vec(n_valid, b, device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: usize, reward: f32, terminal: bool) -> Transition {
        let obs = Observation {
            features: vec![reward; pairs * N_FEATURES],
            mask: vec![true; pairs],
        };
        Transition {
            next: (!terminal).then(|| obs.clone()),
            obs,
            action: 0,
            reward,
        }
    }

    #[test]
    fn buffer_is_bounded_and_evicts_the_oldest() {
        let mut b = ReplayBuffer::new(3, 1);
        for i in 0..5 {
            b.push(t(2, i as f32, false));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.capacity(), 3);
        let mut rewards: Vec<f32> = b.items().iter().map(|t| t.reward).collect();
        rewards.sort_by(f32::total_cmp);
        assert_eq!(rewards, [2.0, 3.0, 4.0]);
        let idx = b.sample_indices(100);
        assert!(idx.iter().all(|&i| i < 3));
        assert_eq!(
            ReplayBuffer::new(3, 1).sample_indices(0),
            Vec::<usize>::new()
        );
        assert!(ReplayBuffer::new(3, 1).sample(2, &Device::Cpu).is_err());
    }

    #[test]
    fn batches_pad_and_mask() {
        let a = t(2, 1.0, false);
        let b = t(4, 2.0, true);
        let batch = Batch::new(&[&a, &b], &Device::Cpu).unwrap();
        assert_eq!(batch.obs.dims(), [2, 4, N_FEATURES]);
        assert_eq!(
            batch.mask.to_vec2::<f32>().unwrap(),
            [[1.0, 1.0, 0.0, 0.0], [1.0; 4]]
        );
        assert_eq!(batch.next_obs.dims(), [2, 2, N_FEATURES]);
        assert_eq!(
            batch.next_mask.to_vec2::<f32>().unwrap(),
            [[1.0, 1.0], [1.0, 0.0]]
        );
        assert_eq!(batch.done.to_vec1::<f32>().unwrap(), [0.0, 1.0]);
        assert_eq!(batch.n_valid.to_vec1::<f32>().unwrap(), [2.0, 4.0]);
    }
}
