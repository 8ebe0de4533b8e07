"""PyTorch twin of the candle discrete SAC in coordinator/src/rl/sac.rs.

Two uses:
  reference  -- computes the reference values the Rust unit tests check
                (losses, updated weights, target update, temperature step)
                on a fixed tiny batch with fixed weights, written as JSON
                to coordinator/src/rl/testdata/sac_reference.json.
  bench      -- loads the transitions, index sequence and initial weights
                that `cargo bench --bench rl -- --dump DIR` wrote, runs the
                same updates and prints training steps per second as JSON.

The update is the one documented in sac.rs: critics toward
r + gamma (1-d) sum_a' pi(a'|s') [min Q'(s',a') - alpha log pi(a'|s')],
then the actor against the updated critics, then log alpha, then Polyak.
"""

import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

N_FEATURES = 19
# The residual actor's planner feature (prior_reward_minus_best, the last).
RESIDUAL_FEATURE = N_FEATURES - 1
MASKED_LOGIT = 1e9
NETS = ["actor", "critic1", "critic2", "target1", "target2"]


class PairMlp(torch.nn.Module):
    """One value per (segment, node) pair, shared weights: [B,P,F] -> [B,P]."""

    def __init__(self, inp, hidden, dtype=torch.float32):
        super().__init__()
        widths = [inp] + list(hidden)
        self.hidden = torch.nn.ModuleList(
            torch.nn.Linear(a, b, dtype=dtype) for a, b in zip(widths[:-1], widths[1:])
        )
        self.out = torch.nn.Linear(widths[-1], 1, dtype=dtype)

    def forward(self, x):
        b, p, f = x.shape
        h = x.reshape(b * p, f)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.out(h).reshape(b, p)

    def named(self, prefix):
        """Parameters under the candle names (prefix.l0.weight, ..., prefix.out.bias)."""
        out = {}
        for i, layer in enumerate(self.hidden):
            out[f"{prefix}.l{i}.weight"] = layer.weight
            out[f"{prefix}.l{i}.bias"] = layer.bias
        out[f"{prefix}.out.weight"] = self.out.weight
        out[f"{prefix}.out.bias"] = self.out.bias
        return out


class Sac:
    def __init__(self, cfg, weights, dtype=torch.float32):
        self.cfg = cfg
        self.nets = {n: PairMlp(N_FEATURES, cfg["hidden"], dtype) for n in NETS}
        self.log_alpha = torch.nn.Parameter(torch.zeros(1, dtype=dtype))
        params = self.params()
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(torch.as_tensor(value, dtype=dtype).reshape(params[name].shape))
        adam = lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.opt_actor = adam(self.nets["actor"].parameters(), cfg["lr_actor"])
        self.opt_critic = adam(
            list(self.nets["critic1"].parameters()) + list(self.nets["critic2"].parameters()),
            cfg["lr_critic"],
        )
        self.opt_alpha = adam([self.log_alpha], cfg["lr_alpha"])

    def params(self):
        out = {"log_alpha": self.log_alpha}
        for n in NETS:
            out.update(self.nets[n].named(n))
        return out

    def log_probs(self, obs, mask):
        # A residual actor: the planner's feature times the gain, plus the net.
        gain = self.cfg.get("residual_gain", 0.0)
        logits = self.nets["actor"](obs) + gain * obs[..., RESIDUAL_FEATURE]
        logits = logits + (mask - 1.0) * MASKED_LOGIT
        return F.log_softmax(logits, dim=-1)

    def update(self, b):
        cfg = self.cfg
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_logp = self.log_probs(b["next_obs"], b["next_mask"])
            next_p = next_logp.exp()
            next_q = torch.minimum(self.nets["target1"](b["next_obs"]), self.nets["target2"](b["next_obs"]))
            next_v = (next_p * (next_q - alpha * next_logp)).sum(-1)
            y = b["reward"] + ((1.0 - b["done"]) * next_v) * cfg["gamma"]
        q1 = self.nets["critic1"](b["obs"]).gather(1, b["action"]).squeeze(1)
        q2 = self.nets["critic2"](b["obs"]).gather(1, b["action"]).squeeze(1)
        critic_loss = (q1 - y).pow(2).mean() + (q2 - y).pow(2).mean()
        self.opt_critic.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.opt_critic.step()

        logp = self.log_probs(b["obs"], b["mask"])
        p = logp.exp()
        with torch.no_grad():
            q = torch.minimum(self.nets["critic1"](b["obs"]), self.nets["critic2"](b["obs"]))
        actor_loss = (p * (alpha * logp - q)).sum(-1).mean()
        self.opt_actor.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.opt_actor.step()

        p_logp = (p * logp).sum(-1).detach()
        target = torch.log(b["n_valid"]) * cfg["target_entropy_fraction"]
        alpha_loss = -(self.log_alpha * (p_logp + target)).mean()
        self.opt_alpha.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.opt_alpha.step()

        tau = cfg["tau"]
        with torch.no_grad():
            for online, tgt in (("critic1", "target1"), ("critic2", "target2")):
                for po, pt in zip(self.nets[online].parameters(), self.nets[tgt].parameters()):
                    pt.copy_(po * tau + pt * (1.0 - tau))
        return {
            "critic": critic_loss.item(),
            "actor": actor_loss.item(),
            "alpha_loss": alpha_loss.item(),
            "alpha": alpha.item(),
            "entropy": -p_logp.mean().item(),
        }


def reference(out_path):
    """Fixed tiny weights and batch, three updates, everything recorded."""
    rng = np.random.default_rng(20240207)
    cfg = {
        "hidden": [6, 5],
        "gamma": 0.9,
        "tau": 0.1,
        "lr_actor": 0.01,
        "lr_critic": 0.02,
        "lr_alpha": 0.05,
        "initial_alpha": 0.3,
        "target_entropy_fraction": 0.5,
        "residual_gain": 0.8,
    }
    shapes = {}
    widths = [N_FEATURES] + cfg["hidden"]
    for n in NETS:
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            shapes[f"{n}.l{i}.weight"] = [b, a]
            shapes[f"{n}.l{i}.bias"] = [b]
        shapes[f"{n}.out.weight"] = [1, widths[-1]]
        shapes[f"{n}.out.bias"] = [1]
    weights = {
        k: rng.uniform(-0.5, 0.5, size=s).astype(np.float32).round(4)
        for k, s in sorted(shapes.items())
    }
    weights["log_alpha"] = np.array([math.log(cfg["initial_alpha"])], dtype=np.float32)
    # Batch of 3: P = 3 pairs (sample 1 has its third pair masked: local used up),
    # P' = 2 next pairs, sample 2 terminal (one valid zero pair).
    B, P, P2 = 3, 3, 2
    obs = rng.normal(size=(B, P, N_FEATURES)).astype(np.float32).round(3)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=np.float32)
    action = np.array([[2], [0], [1]], dtype=np.int64)
    reward = np.array([6.5, 4.25, -1.0], dtype=np.float32)
    next_obs = rng.normal(size=(B, P2, N_FEATURES)).astype(np.float32).round(3)
    next_obs[2] = 0.0
    next_mask = np.array([[1, 1], [1, 0], [1, 0]], dtype=np.float32)
    done = np.array([0, 0, 1], dtype=np.float32)
    n_valid = mask.sum(1)
    batch = {
        "obs": torch.tensor(obs), "mask": torch.tensor(mask), "action": torch.tensor(action),
        "reward": torch.tensor(reward), "next_obs": torch.tensor(next_obs),
        "next_mask": torch.tensor(next_mask), "done": torch.tensor(done),
        "n_valid": torch.tensor(n_valid),
    }
    sac = Sac(cfg, weights)
    steps = []
    for _ in range(3):
        steps.append(sac.update(batch))
    after = {k: v.detach().numpy().astype(np.float64).ravel().tolist() for k, v in sac.params().items()}
    # The same in float64: where float32 rounding alone moves a weight (the
    # softmax ignores a shift of all logits, so e.g. the actor's output bias
    # has a true gradient of 0 and Adam turns float noise into a full step),
    # the tests allow that much slack and no more.
    sac64 = Sac(cfg, weights, torch.float64)
    b64 = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    for _ in range(3):
        sac64.update(b64)
    after64 = {k: v.detach().numpy().ravel().tolist() for k, v in sac64.params().items()}
    doc = {
        "about": "reference values from coordinator/bench-py/sac_torch.py reference (PyTorch "
                 + torch.__version__ + "); three SAC updates on one fixed batch",
        "config": cfg,
        "weights": {k: v.astype(np.float64).ravel().tolist() for k, v in weights.items()},
        "shapes": {**shapes, "log_alpha": [1]},
        "batch": {
            "obs": obs.ravel().tolist(), "obs_shape": [B, P, N_FEATURES],
            "mask": mask.ravel().tolist(), "action": action.ravel().tolist(),
            "reward": reward.tolist(), "next_obs": next_obs.ravel().tolist(),
            "next_shape": [B, P2, N_FEATURES], "next_mask": next_mask.ravel().tolist(),
            "done": done.tolist(), "n_valid": n_valid.tolist(),
        },
        "steps": steps,
        "after": after,
        "after_f64": after64,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {out_path}: losses per step {steps}")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "U32": np.uint32, "I64": np.int64, "F64": np.float64, "U8": np.uint8}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out


def bench(dump_dir, threads):
    if threads:
        torch.set_num_threads(threads)
    with open(f"{dump_dir}/config.json") as f:
        cfg = json.load(f)
    t = read_safetensors(f"{dump_dir}/transitions.safetensors")
    w = read_safetensors(f"{dump_dir}/weights.safetensors")
    sac = Sac(cfg, {k: v.copy() for k, v in w.items()})
    full = {k: torch.tensor(t[k].copy()) for k in
            ["obs", "mask", "reward", "next_obs", "next_mask", "done", "n_valid"]}
    full["action"] = torch.tensor(t["action"].astype(np.int64))
    indices = torch.tensor(t["indices"].astype(np.int64))
    warmup = int(cfg.get("warmup", 20))

    def step(i):
        idx = indices[i]
        return sac.update({k: v.index_select(0, idx) for k, v in full.items()})

    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    last = None
    for i in range(warmup, indices.shape[0]):
        last = step(i)
    secs = time.perf_counter() - t0
    steps = indices.shape[0] - warmup
    print(json.dumps({
        "impl": "pytorch " + torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "seconds": secs,
        "steps_per_s": steps / secs,
        "last": last,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference", help="write the unit-test reference JSON")
    r.add_argument("--out", default="coordinator/src/rl/testdata/sac_reference.json")
    b = sub.add_parser("bench", help="time updates on a dump from the Rust bench")
    b.add_argument("--dump", required=True)
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.cmd == "reference":
        reference(a.out)
    else:
        bench(a.dump, a.threads)


if __name__ == "__main__":
    sys.exit(main())
