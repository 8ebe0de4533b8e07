//! The pair MLP: one set of weights applied to every (segment, node) pair,
//! giving one number per pair (an actor logit or a critic's Q), so a net
//! trained on three nodes runs unchanged on a thousand.

use candle_core::{Result, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An MLP over pair features with ReLU hidden layers.
#[derive(Debug, Clone)]
pub struct PairMlp {
    hidden: Vec<Linear>,
    out: Linear,
}

impl PairMlp {
    /// Layers `vb.pp("l{i}")` for each hidden width, then `vb.pp("out")`
    /// with one output.
    pub fn new(vb: VarBuilder<'_>, input: usize, hidden: &[usize]) -> Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut width = input;
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(candle_nn::linear(width, h, vb.pp(format!("l{i}")))?);
            width = h;
        }
        Ok(Self {
            hidden: layers,
            out: candle_nn::linear(width, 1, vb.pp("out"))?,
        })
    }

    /// `[B, P, F]` pair features → `[B, P]` one value per pair.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, p, f) = x.dims3()?;
        let mut h = x.reshape((b * p, f))?;
        for l in &self.hidden {
            h = l.forward(&h)?.relu()?;
        }
        self.out.forward(&h)?.reshape((b, p))
    }
}

/// Re-initialises every variable of `vars` whose name starts with `prefix`
/// like PyTorch's `nn.Linear` (weights and biases uniform in ±1/√fan_in),
/// from a seeded RNG in name order: candle's CPU RNG cannot be seeded.
pub fn seeded_init(vars: &VarMap, prefix: &str, seed: u64) -> Result<()> {
    let data = vars.data().lock().expect("var map lock");
    let mut names: Vec<&String> = data.keys().filter(|k| k.starts_with(prefix)).collect();
    names.sort();
    let mut rng = StdRng::seed_from_u64(seed);
    for name in names {
        let var: &Var = &data[name];
        let fan_in = if let Some(layer) = name.strip_suffix(".bias") {
            data.get(&format!("{layer}.weight"))
                .map_or(1, |w| w.dims().get(1).copied().unwrap_or(1))
        } else if name.ends_with(".weight") {
            var.dims().get(1).copied().unwrap_or(1)
        } else {
            continue;
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn shared_weights_score_any_number_of_pairs() {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let net = PairMlp::new(vb.pp("actor"), 4, &[8, 8]).unwrap();
        seeded_init(&vars, "actor", 1).unwrap();
        let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 6, 4))
            .unwrap();
        let all = net.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let first = net.forward(&x.narrow(1, 0, 2).unwrap()).unwrap();
        assert_eq!(all[0][..2], first.to_vec2::<f32>().unwrap()[0][..]);

        let again = VarMap::new();
        let vb = VarBuilder::from_varmap(&again, DType::F32, &Device::Cpu);
        let twin = PairMlp::new(vb.pp("actor"), 4, &[8, 8]).unwrap();
        seeded_init(&again, "actor", 1).unwrap();
        assert_eq!(twin.forward(&x).unwrap().to_vec2::<f32>().unwrap(), all);
    }
}
